-- wrk's summary as one JSON line (latencies in ms), parsed by compare.py.
-- wrk counts every non-2xx/3xx answer in errors.status; it checks no bodies.
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'WRK_JSON {"requests":%d,"duration_s":%.6f,"bytes":%d,"errors_connect":%d,"errors_read":%d,' ..
    '"errors_write":%d,"errors_status":%d,"errors_timeout":%d,"avg_ms":%.3f,"p50_ms":%.3f,' ..
    '"p95_ms":%.3f,"p99_ms":%.3f,"max_ms":%.3f}\n',
    summary.requests, summary.duration / 1e6, summary.bytes, e.connect, e.read, e.write,
    e.status, e.timeout, latency.mean / 1000, latency:percentile(50) / 1000,
    latency:percentile(95) / 1000, latency:percentile(99) / 1000, latency.max / 1000))
end
