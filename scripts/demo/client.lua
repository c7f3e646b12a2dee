-- client.lua: wrk script for the demo's client pod (scripts/demo.sh).
-- Paces each connection (one request, then DEMO_DELAY_MS of quiet), so the
-- mesh carries steady traffic instead of saturating two cores, and prints
-- the client's own view as one JSON line at the end: requests, non-2xx/3xx
-- answers, socket errors, latency percentiles (wrk's, in microseconds).
local delay_ms = tonumber(os.getenv("DEMO_DELAY_MS") or "10")

function delay()
	return delay_ms
end

function done(summary, latency, requests)
	local e = summary.errors
	io.write(string.format(
		'{"requests":%d,"duration_us":%d,"bytes":%d,"non_2xx_3xx":%d,' ..
		'"errors":{"connect":%d,"read":%d,"write":%d,"timeout":%d},' ..
		'"latency_us":{"p50":%d,"p90":%d,"p99":%d,"p999":%d,"max":%d,"mean":%.1f}}\n',
		summary.requests, summary.duration, summary.bytes, e.status,
		e.connect, e.read, e.write, e.timeout,
		latency:percentile(50), latency:percentile(90), latency:percentile(99),
		latency:percentile(99.9), latency.max, latency.mean))
end
