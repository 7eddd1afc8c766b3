-- Notes, deleted softly: a deleted note keeps its row (deleted_at set) until the purge worker
-- archives and removes it.
CREATE TABLE notes (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    body TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    deleted_at INTEGER
);

CREATE INDEX notes_deleted ON notes (deleted_at) WHERE deleted_at IS NOT NULL;
