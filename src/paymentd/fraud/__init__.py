"""Fraud: the processor's verdict on payments (Radar), manual reviews, early fraud warnings,
and paymentd's own rules, evaluated before Stripe is called (rules, inputs, velocity,
gate, store; GET/PUT /api/fraud/rules in rules_routes)."""
