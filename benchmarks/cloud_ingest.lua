-- wrk script for benchmarks/bench_cloud.py: POST unique alerts (the fog's payload shape) to /api/v1/alerts.
--   env: MARLIDS_BENCH_KEY (ingest key), MARLIDS_BENCH_RUN (8 hex digits, makes alert ids unique per run),
--        MARLIDS_BENCH_OUT (file the summary JSON is written to), MARLIDS_BENCH_DELAY_MS (optional: each
--        connection waits this long before its next request, for an open-ended rate-limited phase).
-- Every thread counts status codes and keeps the alert_id of every acknowledged (2xx) answer, so the
-- benchmark can check each acknowledged alert against the database afterwards ("zero lost").

local key = os.getenv("MARLIDS_BENCH_KEY")
local run = os.getenv("MARLIDS_BENCH_RUN") or "00000000"
local out = os.getenv("MARLIDS_BENCH_OUT") or "wrk-summary.json"
local delay_ms = tonumber(os.getenv("MARLIDS_BENCH_DELAY_MS") or "0")
if delay_ms > 0 then
  function delay() return delay_ms end
end
local threads = {}
local next_tid = 0

function setup(thread)
  thread:set("tid", next_tid)
  next_tid = next_tid + 1
  table.insert(threads, thread)
end

function init(args)
  counter = 0
  sent = 0
  acked = {}
  codes = {}
  wrk.method = "POST"
  wrk.headers["Content-Type"] = "application/json"
  wrk.headers["Authorization"] = "Bearer " .. key
end

local body_fmt = '{"alert_id":"%s%08x%016x","ts":%d.5,"site_id":"site_%d","device_id":"10.0.%d.%d",' ..
  '"level":%d,"attack_class":"scan","confidence":0.87,"technique_ids":["T1046"],' ..
  '"evidence":{"top_features":[{"name":"out_distinct_dst_ports","value":412.0,"baseline_mean":3.1,"z":41.2},' ..
  '{"name":"out_syn_only_pkts","value":980.0,"baseline_mean":4.0,"z":35.0},' ..
  '{"name":"tcp_failed_conn_fraction","value":0.97,"baseline_mean":0.02,"z":12.5}],' ..
  '"attention_peaks":[{"t":1764000000.0,"weight":0.41}],' ..
  '"protocol_summary":"TCP out: hundreds of packets to hundreds of ports, SYN-only, unanswered."},' ..
  '"policy_version":"bench-1"}'

function request()
  counter = counter + 1
  sent = sent + 1
  local body = string.format(body_fmt, run, tid, counter, 1764000000 + counter, tid % 2, tid % 250, counter % 250,
                             2 + counter % 3)
  return wrk.format(nil, "/api/v1/alerts", nil, body)
end

function response(status, headers, body)
  codes[status] = (codes[status] or 0) + 1
  if status == 201 or status == 200 then
    local id = string.match(body, '"alert_id":"(%x+)"')
    if id then acked[#acked + 1] = id end
  end
end

function done(summary, latency, requests)
  local ids, status, total_sent = {}, {}, 0
  for _, t in ipairs(threads) do
    for _, id in ipairs(t:get("acked")) do ids[#ids + 1] = '"' .. id .. '"' end
    for code, n in pairs(t:get("codes")) do status[tostring(code)] = (status[tostring(code)] or 0) + n end
    total_sent = total_sent + t:get("sent")
  end
  local st = {}
  for code, n in pairs(status) do st[#st + 1] = string.format('"%s":%d', code, n) end
  local f = assert(io.open(out, "w"))
  f:write(string.format(
    '{"duration_us":%d,"requests":%d,"bytes":%d,"sent":%d,' ..
    '"errors":{"connect":%d,"read":%d,"write":%d,"status":%d,"timeout":%d},' ..
    '"latency_us":{"mean":%.1f,"p50":%d,"p90":%d,"p99":%d,"p999":%d,"max":%d},' ..
    '"status":{%s},"acked_ids":[%s]}\n',
    summary.duration, summary.requests, summary.bytes, total_sent,
    summary.errors.connect, summary.errors.read, summary.errors.write, summary.errors.status,
    summary.errors.timeout, latency.mean, latency:percentile(50), latency:percentile(90),
    latency:percentile(99), latency:percentile(99.9), latency.max, table.concat(st, ","), table.concat(ids, ",")))
  f:close()
end
