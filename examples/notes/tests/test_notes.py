"""The notes service through its HTTP API, whichever door and hub serve it."""

from __future__ import annotations

import json
import secrets


def error_of(response) -> dict:
    assert response.headers["Content-Type"] == "application/json", response.text
    return response.json()["error"]


def test_a_posted_note_is_created_and_read_back(notes):
    tag = "t-" + secrets.token_hex(4)
    created = notes.post("/notes", json_body={"title": "Buy oat milk", "body": "two cartons", "tags": [tag]})
    assert created.status_code == 201, created.text
    note = created.json()
    assert note["title"] == "Buy oat milk" and note["body"] == "two cartons" and note["tags"] == [tag]
    assert created.headers["Location"] == f"/notes/{note['id']}"
    assert notes.get(created.headers["Location"]).json() == note


def test_defaults_fill_what_the_client_left_out(notes):
    created = notes.post("/notes", json_body={"title": "only a title"})
    assert created.status_code == 201
    assert created.json()["body"] == "" and created.json()["tags"] == []


def test_the_list_is_a_query_newest_first_filtered_by_tag(notes):
    tag = "t-" + secrets.token_hex(4)
    ids = [notes.post("/notes", json_body={"title": f"note {i}", "tags": [tag]}).json()["id"] for i in range(3)]
    notes.post("/notes", json_body={"title": "another tag", "tags": ["other"]})
    listed = notes.get("/notes", params={"tag": tag})
    assert listed.status_code == 200
    assert [n["id"] for n in listed.json()] == ids[::-1]
    assert [n["id"] for n in notes.get("/notes", params={"tag": tag, "limit": 2}).json()] == ids[:0:-1]


def test_another_content_type_is_415(notes):
    response = notes.post("/notes", data=b"title=x", headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert response.status_code == 415
    assert error_of(response)["status"] == 415


def test_malformed_json_and_a_key_named_twice_are_400(notes):
    headers = {"Content-Type": "application/json"}
    assert notes.post("/notes", data=b'{"title": "x"', headers=headers).status_code == 400
    twice = notes.post("/notes", data=b'{"title": "a", "title": "b"}', headers=headers)
    assert twice.status_code == 400 and error_of(twice)["status"] == 400


def test_every_invalid_field_is_listed_with_its_path(notes):
    body = {"title": "", "body": 5, "tags": ["ok", "Not A Tag"], "colour": "red"}
    response = notes.post("/notes", json_body=body)
    assert response.status_code == 422, response.text
    errors = error_of(response)["details"]["errors"]
    assert sorted(e["path"] for e in errors) == ["$.body", "$.colour", "$.tags[1]", "$.title"], errors
    assert all(e["reason"] for e in errors)


def test_a_missing_title_is_named(notes):
    response = notes.post("/notes", json_body={"body": "no title"})
    assert response.status_code == 422
    assert [e["path"] for e in error_of(response)["details"]["errors"]] == ["$.title"]


def test_an_unknown_note_is_404_json_and_delete_removes_one(notes):
    missing = notes.get("/notes/999999999999")
    assert missing.status_code == 404 and error_of(missing)["details"] == {"id": 999999999999}
    note_id = notes.post("/notes", json_body={"title": "short-lived"}).json()["id"]
    assert notes.request("DELETE", f"/notes/{note_id}").status_code == 204
    assert notes.get(f"/notes/{note_id}").status_code == 404
    assert notes.request("DELETE", f"/notes/{note_id}").status_code == 404


def test_a_limit_out_of_range_is_400(notes):
    response = notes.get("/notes", params={"limit": "0"})
    assert response.status_code == 400 and error_of(response)["details"]["argument"] == "limit"


def test_the_export_streams_every_note_as_ndjson(notes):
    ids = {notes.post("/notes", json_body={"title": f"exported {i}"}).json()["id"] for i in range(3)}
    response = notes.get("/notes/export")
    assert response.status_code == 200
    assert response.headers["Content-Type"] == "application/x-ndjson"
    exported = [json.loads(line)["id"] for line in response.content.splitlines()]
    assert ids <= set(exported) and exported == sorted(exported, reverse=True)


def test_the_health_route_answers_without_the_database(notes):
    response = notes.get("/healthz")
    assert response.status_code == 200 and response.json() == {"status": "ok"}
