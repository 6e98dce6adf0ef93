-- wrk script: searches (GET /Patient?family=…&birthdate=eq…) drawn at random (seeded per
-- thread) from a file of query strings, one a line.
-- wrk -s bench/search.lua URL -- QUERIES_FILE
local common = dofile((debug.getinfo(1, "S").source:match("^@(.*/)") or "./") .. "common.lua")
setup = common.setup

function init(args)
  queries = {}
  for line in io.lines(args[1]) do queries[#queries + 1] = line end
  math.randomseed(index or 1)
  headers = { ["X-Request-ID"] = "6f1c2a7e-3b4d-4e5f-8a9b-0c1d2e3f4a5b" }
end

function request()
  return wrk.format("GET", "/Patient?" .. queries[math.random(#queries)], headers)
end

done = common.done
