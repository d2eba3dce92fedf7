-- wrk script: posts every request of a file once, then stops.
--
-- wrk -t T -s bench/post.lua URL -- FILE CHALLENGE T [DIR]
--
-- FILE holds one request a line, "path<TAB>body".  Thread k of T posts
-- lines k, k+T, k+2T, ... in that order; once its lines are all sent, its
-- connections ask for a path that does not exist (answered 404, not counted)
-- until every one of its posts has had its answer, and the thread stops
-- (writing DIR/done-K when DIR is given: wrk itself runs for its whole
-- duration, so whoever runs it stops it with SIGINT once every thread is done).
-- wrk's own figures then cover the posts and those few probes; the counts
-- printed at the end are the posts' alone.

local threads = {}

function setup(thread)
	thread:set("id", #threads)
	table.insert(threads, thread)
end

function init(args)
	local file, challenge, of = args[1], args[2], tonumber(args[3])
	marks = args[4]
	mine, sent, answered, failed = {}, 0, 0, 0
	local n = 0
	for line in io.lines(file) do
		if n % of == id then
			local path, body = line:match("^([^\t]*)\t(.*)$")
			table.insert(mine, wrk.format("POST", path,
				{ ["Content-Type"] = "application/json", ["x-factorial-wh-challenge"] = challenge }, body))
		end
		n = n + 1
	end
	idle = wrk.format("GET", "/no-such-path-bench")
	if #mine == 0 and marks then
		io.open(marks .. "/done-" .. id, "w"):close()
	end
	-- wrk asks thread 0 for one request before the run, to check the script, and never sends it
	checked = id ~= 0
end

function request()
	if not checked then
		checked = true
		return mine[1] or idle
	end
	if sent < #mine then
		sent = sent + 1
		return mine[sent]
	end
	return idle
end

function response(status, headers, body)
	if status == 404 then
		return
	end
	answered = answered + 1
	if status ~= 200 then
		failed = failed + 1
	end
	if answered == #mine then
		if marks then
			io.open(marks .. "/done-" .. id, "w"):close()
		end
		wrk.thread:stop()
	end
end

function done(summary, latency, requests)
	local answered_all, failed_all = 0, 0
	for _, t in ipairs(threads) do
		answered_all = answered_all + t:get("answered")
		failed_all = failed_all + t:get("failed")
	end
	io.write(string.format("posts answered %d, not 200 %d\n", answered_all, failed_all))
end
