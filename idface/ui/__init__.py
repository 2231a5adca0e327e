"""The Gradio demo's user interface (gradio code only; the service it calls is idface.engine).

- maskcodec: the exact label-map wire format between the browser canvas and the server.
- canvas: the mask editor (a gr.HTML canvas that paints class indices, never colours).
- bars: identity bars (HTML) from the engine's scores.
- handlers: the app's event handlers; conceal_panel: the concealment panel.
"""
