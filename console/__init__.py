"""The marketers' console. ``feedgen.console.registry`` (the definitions store) imports no web app."""
