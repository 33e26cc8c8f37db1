"""Fraud: the processor's verdict on payments (Radar), manual reviews, early fraud warnings."""
