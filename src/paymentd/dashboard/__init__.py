"""The dashboard at /dashboard: server-rendered pages for people (Jinja2 templates, no
scripts, charts drawn as SVG by the server), signed in with an API key that holds the
`dashboard` scope. Its actions call the same services as the API routes."""
