"""``hpclaunch serve``: the queue behind an HTTP API (ASGI, Starlette on uvicorn).

One job per module: ``pool`` (a bounded set of DB-API connections), ``limits``
(the process's open-file limit), ``app`` (routes and JSON errors), ``run`` (uvicorn).
The server calls the named operations of ``hpclaunch.queue``, never SQL of its own.
"""
