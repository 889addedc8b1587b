"""Runs the snippet against a real database (bitacora's test suite calls this).

    python3 demo.py postgresql+psycopg://postgres@127.0.0.1:5432/shop

Expects a table `tickets (id int primary key, title text, status text)` with capture installed.
"""

import sys

from sqlalchemy import create_engine, text
from sqlalchemy.orm import Session

from bitacora_audit import audit_context, install_listener

engine = create_engine(sys.argv[1])
install_listener()

# A request by user 42: both writes are attributed to them.
token = audit_context.set({"actor_id": "42", "actor_name": "Ana Pérez", "ip": "192.168.1.100",
                           "user_agent": "python-demo", "request_id": "req-py-1"})
try:
    with Session(engine) as session:
        session.execute(text("INSERT INTO tickets VALUES (1, 'Impresora rota', 'open')"))
        session.execute(text("UPDATE tickets SET status = 'closed' WHERE id = 1"))
        session.commit()
    # A failed request: rolled back, so nothing is recorded.
    with Session(engine) as session:
        session.execute(text("INSERT INTO tickets VALUES (2, 'never', 'open')"))
        session.rollback()
finally:
    audit_context.reset(token)

# A script without a user: recorded with no actor, even on a pooled connection that served
# the request above.
with Session(engine) as session:
    session.execute(text("DELETE FROM tickets WHERE id = 1"))
    session.commit()
print("ok")
