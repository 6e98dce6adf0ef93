-- wrk script: durable PATCHes, one connection per thread (run with -t N -c N), each thread
-- updating its own patient: the first request reads the record's version, then every answer's
-- ETag gives the If-Match of the next PATCH. Every 200 is a change committed with fsync.
-- wrk -t N -c N -s bench/patch.lua URL -- IDS_FILE TOKEN RUN
-- (RUN: a number unique to this run, so X-Request-IDs never repeat across runs)
local common = dofile((debug.getinfo(1, "S").source:match("^@(.*/)") or "./") .. "common.lua")
setup = common.setup

function init(args)
  local i = 0
  for line in io.lines(args[1]) do
    i = i + 1
    if i == index then id = line break end
  end
  assert(id, "fewer ids than threads")
  token = args[2]
  math.randomseed(index + 100000 * (tonumber(args[3]) or 0))
  path = "/Patient/" .. id
end

local function uuid()
  return string.format("%06x%02x-%04x-4%03x-8%03x-%06x%06x",
    math.random(0, 0xffffff), math.random(0, 0xff), math.random(0, 0xffff),
    math.random(0, 0xfff), math.random(0, 0xfff), math.random(0, 0xffffff),
    math.random(0, 0xffffff))
end

function request()
  local h = { ["X-Request-ID"] = uuid(), ["Authorization"] = "Bearer " .. token }
  if not version then
    return wrk.format("GET", path, h)
  end
  h["If-Match"] = 'W/"' .. version .. '"'
  h["Content-Type"] = "application/json-patch+json"
  local gender = (version % 2 == 0) and "female" or "male"
  return wrk.format("PATCH", path, h,
    '{"patches":[{"op":"replace","path":"/gender","value":"' .. gender .. '"}]}')
end

function response(status, headers, body)
  local etag = headers["etag"] or headers["ETag"]
  if etag then version = tonumber(string.match(etag, "(%d+)")) end
end

done = common.done
