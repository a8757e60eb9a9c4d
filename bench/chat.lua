-- wrk script for bench/run.py: POST /v1/chat/completions as LibreChat sends it (or, with
-- BENCH_API, /v1/responses or /v1/messages: the same short question in that API's body).
--
-- Settings come from the environment (run.py sets them):
--   BENCH_API           "chat" (default), "responses" or "messages": which body to send (the
--                       URL wrk is given names the path)
--   BENCH_STREAM        "1" for "stream": true, otherwise "stream": false
--   BENCH_USERS         how many distinct X-LibreChat-User-Id values to rotate over (default 100)
--   BENCH_USER_PREFIX   user ids are <prefix>000, <prefix>001, ... (default "bench-user-")
--   BENCH_KEY           sent as "Authorization: Bearer <key>": the gateway's service key, or
--                       LiteLLM's master key when wrk calls LiteLLM directly
--   BENCH_TAG           sent as X-LibreChat-Conversation-Id, so the gateway's usage rows of one
--                       wrk run can be counted (usage.conversation_id); the X-LibreChat-*
--                       headers are harmless to the provider and LiteLLM, which ignore them
--
-- Every request is formatted once in init(); request() only picks the next one, so wrk spends
-- no time in Lua per request. done() prints one machine-readable line, "BENCH {json}".

local api = os.getenv("BENCH_API") or "chat"
local stream = os.getenv("BENCH_STREAM") == "1"
local users = tonumber(os.getenv("BENCH_USERS") or "100")
local prefix = os.getenv("BENCH_USER_PREFIX") or "bench-user-"
local key = os.getenv("BENCH_KEY") or "bench-key"
local tag = os.getenv("BENCH_TAG") or "bench"

local prepared = {}
local next_index = 0

local question = '"Say hello to the benchmark in one short sentence."'
local bodies = {
   chat = '{"model":"gpt-4o-mini","messages":[{"role":"user","content":' .. question .. '}],',
   responses = '{"model":"gpt-4o-mini","input":' .. question .. ',',
   messages = '{"model":"claude-sonnet-4-5","max_tokens":64,'
      .. '"messages":[{"role":"user","content":' .. question .. '}],',
}

function init(args)
   local body = assert(bodies[api], "BENCH_API must be chat, responses or messages")
      .. '"stream":' .. (stream and "true" or "false") .. "}"
   for i = 1, users do
      local headers = {
         ["Content-Type"] = "application/json",
         ["Authorization"] = "Bearer " .. key,
         ["X-LibreChat-User-Id"] = string.format("%s%03d", prefix, i - 1),
         ["X-LibreChat-Conversation-Id"] = tag,
      }
      if api == "messages" then
         headers["anthropic-version"] = "2023-06-01"
      end
      prepared[i] = wrk.format("POST", nil, headers, body)
   end
end

function request()
   next_index = next_index % users + 1
   return prepared[next_index]
end

function done(summary, latency, requests)
   local e = summary.errors
   io.write(string.format(
      'BENCH {"requests":%d,"duration_us":%d,"bytes":%d,"status_errors":%d,'
         .. '"connect_errors":%d,"read_errors":%d,"write_errors":%d,"timeouts":%d,'
         .. '"p50_us":%d,"p90_us":%d,"p99_us":%d,"mean_us":%.1f,"max_us":%d}\n',
      summary.requests, summary.duration, summary.bytes, e.status,
      e.connect, e.read, e.write, e.timeout,
      latency:percentile(50), latency:percentile(90), latency:percentile(99),
      latency.mean, latency.max))
end
