-- wrk script: PaymentIntent create, then confirm of that PaymentIntent, as the SDK would send them.
-- Each thread keeps a queue of created-but-unconfirmed ids; a request confirms one if any, else creates.
-- Every request carries a fresh Idempotency-Key (the SDK always sends one on POST).

local made = 0
function setup(thread)
  -- Unique per thread and per run, so keys never collide with another thread's or run's.
  made = made + 1
  thread:set("tag", os.time() .. "-" .. made)
end

local counter = 0
local pending = {}
local auth = "Bearer sk_test_bench"
local create_body = "amount=2000&currency=usd&payment_method=pm_card_visa&metadata[order]=bench"

local function headers()
  counter = counter + 1
  return {
    ["Authorization"] = auth,
    ["Content-Type"] = "application/x-www-form-urlencoded",
    ["Idempotency-Key"] = tag .. "-" .. counter,
  }
end

request = function()
  local id = table.remove(pending)
  if id then
    return wrk.format("POST", "/v1/payment_intents/" .. id .. "/confirm", headers(), "")
  end
  return wrk.format("POST", "/v1/payment_intents", headers(), create_body)
end

response = function(status, hdrs, body)
  if status ~= 200 then
    return
  end
  local id, state = string.match(body, '^{"id":"(pi_[%w]+)".-"status":"([%a_]+)"')
  if id and state == "requires_confirmation" then
    table.insert(pending, id)
  end
end
