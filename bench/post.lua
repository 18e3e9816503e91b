-- wrk: POST a chat completion. BENCH_MODEL selects the model; BENCH_UNIQUE=1 makes every body different
-- (a cache miss each time), otherwise every request is the same (a cache hit after the first). BENCH_KEY, when
-- set, is sent as the API key.
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
local key = os.getenv("BENCH_KEY") or ""
if key ~= "" then wrk.headers["Authorization"] = "Bearer " .. key end
local model = os.getenv("BENCH_MODEL") or "up/m"
local unique = os.getenv("BENCH_UNIQUE") == "1"
local counter = 0
wrk.body = '{"model":"' .. model .. '","messages":[{"role":"user","content":"Say hello in five words."}]}'

if unique then
  request = function()
    counter = counter + 1
    local body = '{"model":"' .. model .. '","messages":[{"role":"user","content":"Say hello ' ..
      tostring(counter) .. ' ' .. tostring(math.random(1, 1000000000)) .. '"}]}'
    return wrk.format(nil, nil, nil, body)
  end
end
