-- wrk script for scripts/bench.sh: POSTs a JSON body and counts a response
-- as good only if it is a 200 whose body carries no "err" field.
wrk.method = "POST"
wrk.body = '{"s":"hello, world"}'
wrk.headers["Content-Type"] = "application/json"

local threads = {}

function setup(thread)
	table.insert(threads, thread)
end

function init(args)
	good = 0
	bad = 0
end

function response(status, headers, body)
	if status == 200 and not string.find(body, '"err"', 1, true) then
		good = good + 1
	else
		bad = bad + 1
	end
end

function done(summary, latency, requests)
	local g, b = 0, 0
	for _, t in ipairs(threads) do
		g = g + t:get("good")
		b = b + t:get("bad")
	end
	b = b + summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.timeout
	io.write(string.format("RESULT good=%d bad=%d duration_us=%d p50_us=%d p99_us=%d\n",
		g, b, summary.duration, latency:percentile(50), latency:percentile(99)))
end
