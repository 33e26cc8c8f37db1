"""A merchant's customers: who pays, and their saved payment methods."""
