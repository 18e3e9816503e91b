-- wrk: POST a chat completion. BENCH_MODEL selects the model; BENCH_UNIQUE=1 makes every body different
-- (a cache miss each time), otherwise every request is the same (a cache hit after the first); BENCH_STREAM=1
-- asks for a stream; BENCH_KEY, when set, is sent as the bearer key.
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
local key = os.getenv("BENCH_KEY") or ""
if key ~= "" then
  wrk.headers["Authorization"] = "Bearer " .. key
end
local model = os.getenv("BENCH_MODEL") or "up/m"
local unique = os.getenv("BENCH_UNIQUE") == "1"
-- temperature 0: a deterministic request, which the response cache may store (sampled ones bypass it)
local tail = ',"temperature":0}'
if os.getenv("BENCH_STREAM") == "1" then
  tail = ',"temperature":0,"stream":true}'
end
local counter = 0
-- every wrk run gets its own nonce from bench/run.py: LuaJIT's math.random repeats its sequence in each run, so
-- without it a later run would resend an earlier run's bodies and hit the cache
local nonce = os.getenv("BENCH_NONCE") or ""
wrk.body = '{"model":"' .. model .. '","messages":[{"role":"user","content":"Say hello in five words."}]' .. tail

if unique then
  request = function()
    counter = counter + 1
    local body = '{"model":"' .. model .. '","messages":[{"role":"user","content":"Say hello ' ..
      nonce .. ' ' .. tostring(counter) .. ' ' .. tostring(math.random(1, 1000000000)) .. '"}]' .. tail
    return wrk.format(nil, nil, nil, body)
  end
end
