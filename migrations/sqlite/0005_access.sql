-- Access: grants per namespace, the principal that began each batch, and an audit trail with
-- one event per call (principal, method, target, outcome). Kept in step across databases.

CREATE TABLE grants (
    namespace       TEXT    NOT NULL,           -- a namespace name, or '*' for every one
    grantee_kind    TEXT    NOT NULL,           -- principal | group
    grantee         TEXT    NOT NULL,
    permission      TEXT    NOT NULL,           -- read | write | admin
    granted_by      TEXT    NOT NULL,
    granted_at_us   BIGINT  NOT NULL,
    PRIMARY KEY (namespace, grantee_kind, grantee)
);

-- Only the principal that began a batch may commit, abort or renew it (NULL: begun without
-- authentication).
ALTER TABLE batches ADD COLUMN began_by TEXT;

-- Who made each tag.
ALTER TABLE tags ADD COLUMN created_by TEXT NOT NULL DEFAULT '';

-- The audit trail is written per call now, not inside the change's transaction; the events
-- recorded before are kept.
CREATE TABLE audit_events_new (
    id              INTEGER PRIMARY KEY,
    at_us           BIGINT  NOT NULL,
    principal       TEXT    NOT NULL,
    claimed_actor   TEXT    NOT NULL,
    method          TEXT    NOT NULL,
    namespace       TEXT    NOT NULL,
    target          TEXT    NOT NULL,
    outcome         TEXT    NOT NULL,
    detail          TEXT    NOT NULL
);
INSERT INTO audit_events_new (at_us, principal, claimed_actor, method, namespace, target, outcome, detail)
    SELECT at_us, actor, actor, action, '', target, 'OK', detail FROM audit_events ORDER BY id;
DROP TABLE audit_events;
ALTER TABLE audit_events_new RENAME TO audit_events;
CREATE INDEX audit_events_at ON audit_events (at_us);
CREATE INDEX audit_events_principal ON audit_events (principal, id);
CREATE INDEX audit_events_namespace ON audit_events (namespace, id);
