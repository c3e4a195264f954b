-- Diagnostic companion of client_credentials.lua (same request, same arguments): prints
-- the first non-2xx response each wrk thread receives (status, headers, body). bench/run.sh
-- runs it briefly after a run that saw non-2xx responses, so the report shows why.
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/x-www-form-urlencoded"
wrk.body = "grant_type=client_credentials"

function init(args)
  wrk.headers["Authorization"] = args[1]
  if args[2] ~= nil and args[2] ~= "" then
    wrk.body = wrk.body .. "&scope=" .. args[2]:gsub(" ", "+")
  end
end

local shown = false
function response(status, headers, body)
  if (status < 200 or status > 299) and not shown then
    shown = true
    local lines = {}
    for k, v in pairs(headers) do lines[#lines + 1] = k .. ": " .. v end
    io.write(string.format("non-2xx sample: HTTP %d\n%s\n\n%s\n", status, table.concat(lines, "\n"), body))
    io.flush()
  end
end
