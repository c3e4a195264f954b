-- wrk script for bench/run.sh: the client_credentials grant with client_secret_basic.
--
--   wrk -t2 -c16 -d10s --latency -s bench/wrk/client_credentials.lua \
--       http://127.0.0.1:PORT/token -- 'Basic base64(client_id:client_secret)' [scope]
--
-- One static request (built once per thread, so wrk's Lua costs nothing per request):
-- POST, an x-www-form-urlencoded body `grant_type=client_credentials[&scope=…]`, and the
-- Authorization header passed as the first script argument (keeps the secret out of files).
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/x-www-form-urlencoded"
wrk.body = "grant_type=client_credentials"

function init(args)
  if args[1] == nil or args[1] == "" then
    error("pass the Authorization header value as the first script argument")
  end
  wrk.headers["Authorization"] = args[1]
  if args[2] ~= nil and args[2] ~= "" then
    wrk.body = wrk.body .. "&scope=" .. args[2]:gsub(" ", "+")
  end
end
