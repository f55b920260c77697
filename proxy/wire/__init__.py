"""The PostgreSQL wire protocol front door (protocol 3.0, as PostgreSQL 15 speaks it).

messages*.py encode and decode messages as pure functions over bytes; state.py
is the per-connection protocol state; handler.py drives the statement pipeline
for one connection; server.py is the only module that touches sockets.
"""
