-- wrk script for a scenario that POSTs a body (bench/measure.py): Express Gateway's token endpoint.
-- Usage: wrk ... -s bench/post.lua URL -- BODY CONTENT-TYPE
-- wrk builds its request after init(), so the method, body and header set here go on every request.

function init(args)
  wrk.method = "POST"
  wrk.body = args[1]
  wrk.headers["Content-Type"] = args[2]
end
