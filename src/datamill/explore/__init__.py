"""`datamill explore` and `datamill report`: see a workdir's data in a browser.

A small read-only web app (Starlette, Jinja2 with autoescape, SVG charts drawn on the server,
DuckDB to page the set-aside rows) over the files a run left: manifest, step records, step
Parquet files. `create_app(paths)` (app.py) builds it; `serve(...)` (server.py) runs it with
uvicorn; `write_report(path, out)` (report.py) writes the overview as one HTML file.
How to add a page: see app.py's docstring. Security model: security.py and docs/explore.md.

Nothing here is imported by `import datamill`: the web stack loads only for these commands.
"""
