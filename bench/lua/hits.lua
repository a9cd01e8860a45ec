-- wrk: cycle over a fixed, pre-warmed URL set. args: size, url count
local reqs = {}
local i = 0
function init(args)
  local size, n = args[1], tonumber(args[2])
  for k = 1, n do reqs[k] = wrk.format("GET", "/" .. size .. "/hit-" .. k) end
end
function request()
  i = i % #reqs + 1
  return reqs[i]
end
