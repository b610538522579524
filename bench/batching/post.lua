-- wrk script: POST one batch-1 V2 inference request (FEATURES values) and report a JSON summary.
-- Non-200 answers are counted as errors (wrk's own summary.errors.status counts only >= 400).
local features = tonumber(os.getenv("KNINFER_BENCH_FEATURES") or "256")
-- the model's input name, from its metadata (run.py reads it and checks one request first)
local input = os.getenv("KNINFER_BENCH_INPUT") or "input"
local values = {}
for i = 1, features do
  values[i] = string.format("%.3f", (i % 17) / 17.0)
end
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.body = '{"inputs":[{"name":"' .. input .. '","shape":[1,' .. features .. '],"datatype":"FP32","data":['
  .. table.concat(values, ",") .. ']}]}'

local bad = 0
function response(status, headers, body)
  if status ~= 200 then
    bad = bad + 1
  end
end

function done(summary, latency, requests)
  local seconds = summary.duration / 1e6
  local e = summary.errors
  io.write(string.format(
    'JSON {"requests":%d,"seconds":%.3f,"rps":%.1f,"p50_ms":%.2f,"p90_ms":%.2f,"p99_ms":%.2f,'
      .. '"max_ms":%.2f,"errors":%d,"non_200":%d}\n',
    summary.requests, seconds, summary.requests / seconds, latency:percentile(50) / 1000,
    latency:percentile(90) / 1000, latency:percentile(99) / 1000, latency.max / 1000,
    e.connect + e.read + e.write + e.status + e.timeout, bad))
end
