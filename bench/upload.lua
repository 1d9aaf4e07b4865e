-- wrk script for the 10 MB upload scenarios (bench/measure.py): POST a body of SIZE bytes ("x").
-- Usage: wrk ... -s bench/upload.lua URL -- SIZE CONTENT-TYPE
-- wrk builds its request after init(), so the method, body and header set here go on every
-- request; the body is built once per thread.

function init(args)
  wrk.method = "POST"
  wrk.body = string.rep("x", tonumber(args[1]))
  wrk.headers["Content-Type"] = args[2]
end
