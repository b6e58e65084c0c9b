-- wrk script: POST pre-generated, signed, UNIQUE WeCom callbacks (bench/callback.py writes the file).
-- One request per line: "<path?query>\t<body>". Every delivery is new, so the server's dedupe never
-- short-circuits; `done` reports whether the file ran out and wrk had to start it over.
--   wrk -t1 -c64 -d10s --latency -s bench/callback_load.lua http://127.0.0.1:PORT -- requests.tsv

local requests = {}
local n = 0

function init(args)
  local f = assert(io.open(args[1], "r"))
  local headers = { ["Content-Type"] = "text/xml" }
  for line in f:lines() do
    local tab = string.find(line, "\t", 1, true)
    n = n + 1
    requests[n] = wrk.format("POST", string.sub(line, 1, tab - 1), headers, string.sub(line, tab + 1))
  end
  f:close()
  i = 0
  wrapped = 0
end

function request()
  i = i + 1
  if i > n then
    i = 1
    wrapped = wrapped + 1
  end
  return requests[i]
end

local threads = {}

function setup(thread)
  table.insert(threads, thread)
end

function done(summary, latency, requests)
  for _, t in ipairs(threads) do
    io.write(string.format("wrapped=%d\n", t:get("wrapped")))
  end
end
