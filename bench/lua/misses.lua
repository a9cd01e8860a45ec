-- wrk: every request a URL never asked before. args: size, run tag (unique per run)
local n_threads = 0
function setup(thread)
  n_threads = n_threads + 1
  thread:set("id", n_threads)
end
local counter = 0
local prefix
function init(args)
  prefix = "/" .. args[1] .. "/miss-" .. args[2] .. "-" .. id .. "-"
end
function request()
  counter = counter + 1
  return wrk.format("GET", prefix .. counter)
end
