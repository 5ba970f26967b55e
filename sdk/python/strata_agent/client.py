"""The client: one httpx.Client per Strata node, typed results, errors as StrataError."""
from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator, Optional

import httpx


class StrataError(Exception):
    """An error the API answered: its HTTP status, stable code, message and, when waiting
    helps, the seconds to wait (Retry-After)."""

    def __init__(self, status: int, code: str, message: str, retry_after: Optional[int] = None):
        super().__init__(f"{status} {code}: {message}")
        self.status = status
        self.code = code
        self.message = message
        self.retry_after = retry_after


@dataclass(frozen=True)
class SendResult:
    id: str
    duplicate: bool


@dataclass(frozen=True)
class Message:
    id: str
    lease: str
    lease_until_ms: int
    attempt: int
    priority: int
    body: Any
    sent_ms: int
    key: Optional[str] = None
    tags: list = field(default_factory=list)
    expires_ms: Optional[int] = None
    not_before_ms: Optional[int] = None
    claim: Optional[dict] = None

    @staticmethod
    def of(m: dict, body: Any = None) -> "Message":
        return Message(id=m["id"], lease=m["lease"], lease_until_ms=m["lease_until_ms"],
                       attempt=m["attempt"], priority=m["priority"],
                       body=m["body"] if body is None else body,
                       sent_ms=m["sent_ms"], key=m.get("key"), tags=m.get("tags", []),
                       expires_ms=m.get("expires_ms"), not_before_ms=m.get("not_before_ms"),
                       claim=m.get("claim"))


@dataclass(frozen=True)
class Event:
    id: int
    data: Any
    sent_ms: int
    type: Optional[str] = None

    @staticmethod
    def of(e: dict) -> "Event":
        return Event(id=e["id"], data=e["data"], sent_ms=e["sent_ms"], type=e.get("type"))


@dataclass(frozen=True)
class Agent:
    name: str
    online: bool
    seen_ms: int
    card: dict

    @staticmethod
    def of(a: dict) -> "Agent":
        card = {k: v for k, v in a.items() if k not in ("online", "seen_ms")}
        return Agent(name=a["name"], online=a["online"], seen_ms=a["seen_ms"], card=card)


@dataclass(frozen=True)
class Task:
    id: str
    agent: str
    state: str
    created_ms: int
    updated_ms: int
    events: list

    FINAL = ("completed", "failed", "canceled")

    @property
    def final(self) -> bool:
        return self.state in Task.FINAL

    @staticmethod
    def of(t: dict) -> "Task":
        return Task(id=t["id"], agent=t["agent"], state=t["state"], created_ms=t["created_ms"],
                    updated_ms=t["updated_ms"], events=t.get("events", []))


@dataclass(frozen=True)
class TaskEvent:
    id: int
    kind: str
    by: str
    data: Any
    at_ms: int
    task: str
    state: Optional[str] = None

    @staticmethod
    def of(e: dict) -> "TaskEvent":
        return TaskEvent(id=e["id"], kind=e["kind"], by=e["by"], data=e.get("data"),
                         at_ms=e["at_ms"], task=e["task"], state=e.get("state"))


class Client:
    """A client of one node's agent API (`base_url`, `http://127.0.0.1:8090` by default).
    `token` is the deployment's bearer token; `agent_token` the token of the agent this
    client acts as (set by `register`)."""

    def __init__(self, base_url: str = "http://127.0.0.1:8090", token: Optional[str] = None,
                 agent_token: Optional[str] = None, timeout: float = 65.0):
        self.base_url = base_url.rstrip("/")
        self.token = token
        self.agent_token = agent_token
        self._http = httpx.Client(base_url=self.base_url, timeout=timeout)

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> "Client":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _headers(self, extra: Optional[dict] = None, as_agent: bool = False) -> dict:
        h = {}
        if self.token:
            h["Authorization"] = f"Bearer {self.token}"
        if as_agent and self.agent_token:
            h["X-Agent-Token"] = self.agent_token
        h.update(extra or {})
        return h

    def _call(self, method: str, path: str, body: Any = None, *, params: Optional[dict] = None,
              headers: Optional[dict] = None, as_agent: bool = False) -> Any:
        r = self._http.request(method, path, json=body, params=params,
                               headers=self._headers(headers, as_agent))
        if r.status_code >= 400:
            raise _error(r)
        return r.json() if r.content else None

    # Work queues (and mailboxes, which are queues only their agent reads).

    def send(self, queue: str, body: Any, *, priority: str = "normal", key: Optional[str] = None,
             tags: Optional[list] = None, ttl_ms: Optional[int] = None,
             delay_ms: Optional[int] = None, idempotency_key: Optional[str] = None) -> SendResult:
        """Stores a message (delivered no sooner than `delay_ms` from now); a retry with the
        same `idempotency_key` stores nothing more."""
        return self._send(f"/v1/queues/{queue}/messages", body, priority, key, tags, ttl_ms,
                          idempotency_key, delay_ms)

    def send_to_agent(self, agent: str, body: Any, **kw) -> SendResult:
        """Stores a message in `agent`'s mailbox."""
        return self._send(f"/v1/agents/{agent}/mailbox/messages", body, kw.get("priority", "normal"),
                          kw.get("key"), kw.get("tags"), kw.get("ttl_ms"), kw.get("idempotency_key"),
                          kw.get("delay_ms"))

    def _send(self, path, body, priority, key, tags, ttl_ms, idempotency_key,
              delay_ms=None) -> SendResult:
        req = {"body": body, "priority": priority}
        if key is not None:
            req["key"] = key
        if tags:
            req["tags"] = tags
        if ttl_ms is not None:
            req["ttl_ms"] = ttl_ms
        if delay_ms is not None:
            req["delay_ms"] = delay_ms
        headers = {"Idempotency-Key": idempotency_key} if idempotency_key else None
        a = self._call("POST", path, req, headers=headers)
        return SendResult(id=a["id"], duplicate=a["duplicate"])

    def _base(self, queue: Optional[str], mailbox: Optional[str]) -> tuple:
        if mailbox is not None:
            return f"/v1/agents/{mailbox}/mailbox", True
        return f"/v1/queues/{queue}", False

    def fetch(self, queue: Optional[str] = None, *, mailbox: Optional[str] = None, max: int = 1,
              lease_ms: Optional[int] = None, wait_ms: int = 0) -> list:
        """Up to `max` messages on leases, waiting up to `wait_ms` for one."""
        base, as_agent = self._base(queue, mailbox)
        req = {"max": max, "wait_ms": wait_ms}
        if lease_ms is not None:
            req["lease_ms"] = lease_ms
        a = self._call("POST", f"{base}/fetch", req, as_agent=as_agent)
        # A large body was kept on its own (claim-check): read it in. One that cannot be
        # read (gone with the blobs' retention) stays None, its claim kept: the other
        # messages of the fetch are not held up by it.
        return [Message.of(m, self._claimed(m)) for m in a["messages"]]

    def _claimed(self, m: dict) -> Any:
        if not m.get("claim"):
            return None
        try:
            return self.blob(m["claim"]["id"])
        except (StrataError, httpx.TransportError):
            return None

    def blob(self, claim_id: str) -> Any:
        """A large message body kept on its own (claim-check), by its claim's id."""
        return self._call("GET", f"/v1/blobs/{claim_id}")

    def ack(self, lease: str, queue: Optional[str] = None, *, mailbox: Optional[str] = None) -> str:
        base, as_agent = self._base(queue, mailbox)
        return self._call("POST", f"{base}/ack", {"lease": lease}, as_agent=as_agent)["id"]

    def nack(self, lease: str, queue: Optional[str] = None, *, mailbox: Optional[str] = None,
             delay_ms: int = 0) -> str:
        base, as_agent = self._base(queue, mailbox)
        return self._call("POST", f"{base}/nack", {"lease": lease, "delay_ms": delay_ms},
                          as_agent=as_agent)["id"]

    def extend(self, lease: str, lease_ms: int, queue: Optional[str] = None, *,
               mailbox: Optional[str] = None) -> int:
        base, as_agent = self._base(queue, mailbox)
        return self._call("POST", f"{base}/extend", {"lease": lease, "lease_ms": lease_ms},
                          as_agent=as_agent)["lease_until_ms"]

    def process(self, queue: Optional[str], handler: Callable[[Message], Any], *,
                mailbox: Optional[str] = None, lease_ms: int = 30000, wait_ms: int = 20000,
                nack_delay_ms: int = 0) -> Optional[Message]:
        """Fetches one message and runs `handler` on it, extending its lease at half its
        length meanwhile; acks it when the handler returns, nacks it (with
        `nack_delay_ms`) when it raises (and raises again). The message, or None when none
        came within `wait_ms`."""
        got = self.fetch(queue, mailbox=mailbox, max=1, lease_ms=lease_ms, wait_ms=wait_ms)
        if not got:
            return None
        m = got[0]
        done = threading.Event()

        def keep_leased():
            while not done.wait(lease_ms / 2000):
                try:
                    self.extend(m.lease, lease_ms, queue, mailbox=mailbox)
                except StrataError:
                    return

        keeper = threading.Thread(target=keep_leased, daemon=True)
        keeper.start()
        try:
            handler(m)
        except BaseException:
            done.set()
            keeper.join()
            self.nack(m.lease, queue, mailbox=mailbox, delay_ms=nack_delay_ms)
            raise
        done.set()
        keeper.join()
        self.ack(m.lease, queue, mailbox=mailbox)
        return m

    def describe(self, queue: str) -> dict:
        return self._call("GET", f"/v1/queues/{queue}")

    def create_queue(self, queue: str, storage: Optional[str] = None) -> str:
        """Creates queue `queue` in storage class `storage` ("memory", "local", "object";
        the node's default when None) unless it exists in it: its class."""
        body = {} if storage is None else {"storage": storage}
        return self._call("PUT", f"/v1/queues/{queue}", body)["storage"]

    # Topics.

    def create_topic(self, topic: str, storage: Optional[str] = None) -> str:
        """Creates topic `topic` in storage class `storage` unless it exists in it: its class."""
        body = {} if storage is None else {"storage": storage}
        return self._call("PUT", f"/v1/topics/{topic}", body)["storage"]

    def publish(self, topic: str, data: Any, type: Optional[str] = None) -> int:
        body = {"data": data} if type is None else {"data": data, "type": type}
        return self._call("POST", f"/v1/topics/{topic}/events", body)["id"]

    def read(self, topic: str, from_id: int = 0, *, max: int = 100, wait_ms: int = 0) -> tuple:
        """Events from `from_id`: (events, next id)."""
        a = self._call("GET", f"/v1/topics/{topic}/events",
                       params={"from": from_id, "max": max, "wait_ms": wait_ms})
        return [Event.of(e) for e in a["events"]], a["next"]

    def subscribe(self, topic: str, *, from_id: Optional[int] = None,
                  last_event_id: Optional[int] = None, retry_s: float = 0.5,
                  stop: Optional[threading.Event] = None) -> Iterator[Event]:
        """Every event of `topic` from `from_id` (or after `last_event_id`; neither: new
        ones only), as Server-Sent Events, reconnecting after a dropped connection or a
        node restart with the last id yielded: none missed, none twice. Ends when `stop`
        is set (checked between events and reconnects)."""
        last = last_event_id
        while stop is None or not stop.is_set():
            headers = self._headers({"Accept": "text/event-stream"})
            params = {}
            if last is not None:
                headers["Last-Event-ID"] = str(last)
            elif from_id is not None:
                params["from"] = from_id
            try:
                with self._http.stream("GET", f"/v1/topics/{topic}/events", params=params,
                                       headers=headers, timeout=httpx.Timeout(10.0, read=60.0)) as r:
                    if r.status_code >= 400:
                        r.read()
                        raise _error(r)
                    fields: dict = {}
                    for line in r.iter_lines():
                        if line == "":
                            if "data" in fields:
                                e = json.loads(fields["data"])
                                last = e["id"]
                                yield Event.of(e)
                                if stop is not None and stop.is_set():
                                    return
                            fields = {}
                        elif not line.startswith(":"):
                            k, _, v = line.partition(": ")
                            fields[k] = v
            except (httpx.TransportError, httpx.RemoteProtocolError):
                pass
            except StrataError as e:
                if e.status < 500:
                    raise
            time.sleep(retry_s)

    # Agents and tasks.

    def register(self, card: dict, lease_ms: Optional[int] = None,
                 storage: Optional[str] = None) -> str:
        """Registers (or, with this client's agent token, updates) an agent, its mailbox in
        storage class `storage` when given: its token, which this client then acts with."""
        body = {"card": card}
        if lease_ms is not None:
            body["lease_ms"] = lease_ms
        if storage is not None:
            body["storage"] = storage
        a = self._call("POST", "/v1/agents", body, as_agent=True)
        if "token" in a:
            self.agent_token = a["token"]
        return self.agent_token

    def heartbeat(self, name: str) -> int:
        return self._call("POST", f"/v1/agents/{name}/heartbeat", {}, as_agent=True)["online_until_ms"]

    def agents(self, *, skill: Optional[str] = None, tag: Optional[str] = None,
               online: bool = False, max: int = 100) -> list:
        params = {"max": max}
        if skill:
            params["skill"] = skill
        if tag:
            params["tag"] = tag
        if online:
            params["online"] = "true"
        return [Agent.of(a) for a in self._call("GET", "/v1/agents", params=params)["agents"]]

    def create_task(self, agent: str, input: Any = None) -> Task:
        return Task.of(self._call("POST", "/v1/tasks", {"agent": agent, "input": input}))

    def task(self, task_id: str) -> Task:
        return Task.of(self._call("GET", f"/v1/tasks/{task_id}"))

    def wait_task(self, task_id: str, timeout_s: float = 300.0) -> Task:
        """The task once it is final or needs input (long-polls until `timeout_s`)."""
        end = time.time() + timeout_s
        while True:
            left = max(0, min(45000, int((end - time.time()) * 1000)))
            t = Task.of(self._call("GET", f"/v1/tasks/{task_id}/wait", params={"wait_ms": left}))
            if t.final or t.state == "input-required" or time.time() >= end:
                return t

    def task_events(self, task_id: str, after: Optional[int] = None, *,
                    wait_ms: int = 0) -> tuple:
        """Events after id `after`: (task state, events)."""
        params = {"wait_ms": wait_ms}
        if after is not None:
            params["after"] = after
        a = self._call("GET", f"/v1/tasks/{task_id}/events", params=params)
        return a["state"], [TaskEvent.of(e) for e in a["events"]]

    def stream_task(self, task_id: str, after: Optional[int] = None) -> Iterator[TaskEvent]:
        """Every event of the task after `after`, until it is final."""
        while True:
            state, events = self.task_events(task_id, after, wait_ms=30000)
            for e in events:
                after = e.id
                yield e
            if state in Task.FINAL and not events:
                return

    def report(self, task_id: str, kind: str, *, state: Optional[str] = None,
               data: Any = None) -> Task:
        """Appends an event to a task this client's agent works on."""
        body = {"kind": kind, "data": data}
        if state is not None:
            body["state"] = state
        return Task.of(self._call("POST", f"/v1/tasks/{task_id}/events", body, as_agent=True))

    def respond(self, task_id: str, data: Any) -> Task:
        return Task.of(self._call("POST", f"/v1/tasks/{task_id}/respond", {"data": data}))

    def cancel(self, task_id: str) -> Task:
        return Task.of(self._call("POST", f"/v1/tasks/{task_id}/cancel"))


def _error(r: httpx.Response) -> StrataError:
    try:
        e = r.json()["error"]
        code, message = e["code"], e["message"]
    except (ValueError, KeyError, TypeError):
        code, message = "http", r.text[:200]
    retry = r.headers.get("retry-after")
    return StrataError(r.status_code, code, message, int(retry) if retry and retry.isdigit() else None)
