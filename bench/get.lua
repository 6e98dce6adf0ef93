-- wrk script: GET /Patient/{id} for ids drawn at random (seeded per thread) from a file.
-- wrk -s bench/get.lua URL -- IDS_FILE [PATH_PREFIX]
local common = dofile((debug.getinfo(1, "S").source:match("^@(.*/)") or "./") .. "common.lua")
setup = common.setup

function init(args)
  ids = {}
  for line in io.lines(args[1]) do ids[#ids + 1] = line end
  prefix = args[2] or ""
  math.randomseed(index or 1)
  headers = { ["X-Request-ID"] = "6f1c2a7e-3b4d-4e5f-8a9b-0c1d2e3f4a5b" }
end

function request()
  return wrk.format("GET", prefix .. "/Patient/" .. ids[math.random(#ids)], headers)
end

done = common.done
