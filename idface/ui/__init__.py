"""The Gradio demo's logic, kept out of app.py so tests and the CLI reach it.

- maskcodec: the exact label-map wire format between the browser canvas and the server.
- canvas: the mask editor (a gr.HTML canvas that paints class indices, never colours).
- engine: one object that prepares faces, generates and scores; shared by app, API and CLI.
- bars: identity bars (HTML) from the engine's scores.
- outputs: synthetic-marked PNG files and attention overlays.
"""
