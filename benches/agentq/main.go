// Command agentq is the load generator of benches/agent_peers.py: one work queue driven the
// same way on Strata's agent API, NATS JetStream and Redis Streams. Producers send fixed-size
// messages, each waiting for its answer; consumers fetch up to -batch at a time (waiting up
// to a second when nothing is ready) and acknowledge each message on its own, each waiting
// for the answer. Every producer and consumer has its own connection. It prints one JSON
// line: messages, seconds from the first send to the last ack, messages per second.
//
// With -rate, it measures send-to-deliver latency instead: producers send -rate messages a
// second in all for -seconds, each payload starting with its send time, and consumers note
// how long each message took from its send to their hands (before they ack it). It prints
// the latency's p50, p99, p99.9 and max.
package main

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/redis/go-redis/v9"
)

// A queue system: producers and consumers, each on its own connection.
type system interface {
	setup() error
	producer() (func(payload []byte) error, error)
	// consumer returns a function that fetches up to max messages, acks each, and
	// returns how many it acked.
	consumer(id int) (func(max int) (int, error), error)
}

func main() {
	kind := flag.String("system", "strata", "strata | nats | redis")
	addr := flag.String("addr", "127.0.0.1:8090", "the server's host:port")
	producers := flag.Int("producers", 4, "producers")
	consumers := flag.Int("consumers", 8, "consumers")
	messages := flag.Int("messages", 100000, "messages in all")
	size := flag.Int("size", 1024, "payload bytes")
	batch := flag.Int("batch", 100, "most messages one fetch asks for")
	queue := flag.String("queue", "bench", "queue, stream or key name")
	storage := flag.String("storage", "local", "Strata's storage class")
	batchAck := flag.Bool("batch-ack", false,
		"ack each fetched batch at once, as each system allows (Strata: one ack of many "+
			"leases; Redis: XACK of many ids; NATS: the batch's acks sent back to back, "+
			"the last one confirmed)")
	rate := flag.Float64("rate", 0, "latency mode: messages a second, in all (0: throughput mode)")
	seconds := flag.Float64("seconds", 30, "latency mode: how long producers send")
	flag.Parse()
	var lat latencies
	var seen func([]byte)
	if *rate > 0 {
		*messages = int(*rate * *seconds)
		seen = lat.note
	}

	var s system
	switch *kind {
	case "strata":
		s = &strata{base: "http://" + *addr, queue: *queue, storage: *storage, batch: *batchAck,
			seen: seen}
	case "nats":
		s = &jetstream{url: "nats://" + *addr, subject: *queue, batch: *batchAck, seen: seen}
	case "redis":
		s = &streams{addr: *addr, key: *queue, batch: *batchAck, seen: seen}
	default:
		fail(fmt.Errorf("unknown system %q", *kind))
	}
	if err := s.setup(); err != nil {
		fail(err)
	}
	payload := bytes.Repeat([]byte("x"), *size)
	var acked atomic.Int64
	// When the last ack landed: consumers still in a long-poll then are not timed.
	var ended atomic.Int64
	total := int64(*messages)
	start := time.Now()
	var wg sync.WaitGroup
	for p := 0; p < *producers; p++ {
		send, err := s.producer()
		if err != nil {
			fail(err)
		}
		n := *messages / *producers
		if p < *messages%*producers {
			n++
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			if *rate > 0 {
				// Paced: one send every producers/rate seconds, each stamped with its time.
				every := time.Duration(float64(time.Second) * float64(*producers) / *rate)
				tick := time.NewTicker(every)
				defer tick.Stop()
				for i := 0; i < n; i++ {
					<-tick.C
					if err := send(stamped(*size)); err != nil {
						fail(err)
					}
				}
				return
			}
			for i := 0; i < n; i++ {
				if err := send(payload); err != nil {
					fail(err)
				}
			}
		}()
	}
	for c := 0; c < *consumers; c++ {
		fetch, err := s.consumer(c)
		if err != nil {
			fail(err)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			for acked.Load() < total {
				n, err := fetch(*batch)
				if err != nil {
					fail(err)
				}
				if acked.Add(int64(n)) >= total {
					ended.CompareAndSwap(0, int64(time.Since(start)))
				}
			}
		}()
	}
	wg.Wait()
	secs := time.Duration(ended.Load()).Seconds()
	if *rate > 0 {
		out, _ := json.Marshal(lat.summary(*kind, *rate))
		fmt.Println(string(out))
		return
	}
	out, _ := json.Marshal(map[string]any{
		"system": *kind, "messages": acked.Load(), "seconds": secs,
		"msgs_per_sec": float64(acked.Load()) / secs,
	})
	fmt.Println(string(out))
}

// A payload of `size` bytes starting with the time it is made (nanoseconds, 19 digits).
func stamped(size int) []byte {
	p := bytes.Repeat([]byte("x"), max(size, 19))
	copy(p, fmt.Sprintf("%019d", time.Now().UnixNano()))
	return p
}

// Send-to-deliver latencies, noted by consumers as messages reach them.
type latencies struct {
	mu sync.Mutex
	us []float64
}

func (l *latencies) note(payload []byte) {
	if len(payload) < 19 {
		return
	}
	sent, err := strconv.ParseInt(string(payload[:19]), 10, 64)
	if err != nil {
		return
	}
	d := float64(time.Now().UnixNano()-sent) / 1000
	l.mu.Lock()
	l.us = append(l.us, d)
	l.mu.Unlock()
}

func (l *latencies) summary(kind string, rate float64) map[string]any {
	l.mu.Lock()
	defer l.mu.Unlock()
	sort.Float64s(l.us)
	at := func(q float64) float64 {
		if len(l.us) == 0 {
			return 0
		}
		return l.us[min(len(l.us)-1, int(q*float64(len(l.us))))] / 1000
	}
	return map[string]any{
		"system": kind, "rate": rate, "messages": len(l.us),
		"p50_ms": at(0.50), "p99_ms": at(0.99), "p999_ms": at(0.999), "max_ms": at(1),
	}
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, "agentq:", err)
	os.Exit(1)
}

// Strata's agent API: one HTTP/1.1 connection per producer and consumer.
type strata struct {
	base, queue, storage string
	batch                bool
	seen                 func([]byte)
}

func (s *strata) client() *http.Client {
	// No Client.Timeout (a timer per request): the transport bounds the wait for an
	// answer instead. No compression asked for: bodies are small JSON.
	return &http.Client{
		Transport: &http.Transport{MaxIdleConnsPerHost: 1, MaxConnsPerHost: 1,
			DisableCompression: true, ResponseHeaderTimeout: 60 * time.Second},
	}
}

func (s *strata) call(c *http.Client, method, path string, body any, out any) error {
	b, ok := body.([]byte)
	if !ok {
		b, _ = json.Marshal(body)
	}
	req, err := http.NewRequest(method, s.base+path, bytes.NewReader(b))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := c.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		return err
	}
	if resp.StatusCode >= 300 {
		return fmt.Errorf("%s %s: %d %s", method, path, resp.StatusCode, data)
	}
	if out != nil {
		return json.Unmarshal(data, out)
	}
	return nil
}

func (s *strata) setup() error {
	return s.call(s.client(), "PUT", "/v1/queues/"+s.queue, map[string]any{"storage": s.storage}, nil)
}

func (s *strata) producer() (func([]byte) error, error) {
	c := s.client()
	// Every send carries the same payload: its request body is encoded once.
	var body, of []byte
	return func(payload []byte) error {
		if !bytes.Equal(payload, of) {
			body, _ = json.Marshal(map[string]any{"body": string(payload)})
			of = payload
		}
		return s.call(c, "POST", "/v1/queues/"+s.queue+"/messages", body, nil)
	}, nil
}

func (s *strata) consumer(int) (func(int) (int, error), error) {
	c := s.client()
	return func(max int) (int, error) {
		var got struct {
			Messages []struct {
				Lease string `json:"lease"`
				Body  string `json:"body"`
			} `json:"messages"`
		}
		err := s.call(c, "POST", "/v1/queues/"+s.queue+"/fetch",
			map[string]any{"max": max, "wait_ms": 1000, "lease_ms": 60000}, &got)
		if err != nil {
			return 0, err
		}
		if s.seen != nil {
			for _, m := range got.Messages {
				s.seen([]byte(m.Body))
			}
		}
		if s.batch && len(got.Messages) > 0 {
			leases := make([]string, 0, len(got.Messages))
			for _, m := range got.Messages {
				leases = append(leases, m.Lease)
			}
			err := s.call(c, "POST", "/v1/queues/"+s.queue+"/ack",
				map[string]any{"leases": leases}, nil)
			return len(got.Messages), err
		}
		for _, m := range got.Messages {
			if err := s.call(c, "POST", "/v1/queues/"+s.queue+"/ack",
				map[string]any{"lease": m.Lease}, nil); err != nil {
				return 0, err
			}
		}
		return len(got.Messages), nil
	}, nil
}

// NATS JetStream: a work-queue stream on file storage, one durable pull consumer with
// explicit acks; publishes wait for their PubAck, acks for their confirmation (AckSync).
type jetstream struct {
	url, subject string
	batch        bool
	seen         func([]byte)
}

func (j *jetstream) context() (nats.JetStreamContext, *nats.Conn, error) {
	nc, err := nats.Connect(j.url)
	if err != nil {
		return nil, nil, err
	}
	js, err := nc.JetStream()
	return js, nc, err
}

func (j *jetstream) setup() error {
	js, _, err := j.context()
	if err != nil {
		return err
	}
	name := strings.ToUpper(j.subject)
	if _, err := js.AddStream(&nats.StreamConfig{
		Name: name, Subjects: []string{j.subject}, Retention: nats.WorkQueuePolicy,
		Storage: nats.FileStorage,
	}); err != nil {
		return err
	}
	_, err = js.AddConsumer(name, &nats.ConsumerConfig{
		Durable: "workers", AckPolicy: nats.AckExplicitPolicy, MaxAckPending: 100000,
		AckWait: 60 * time.Second,
	})
	return err
}

func (j *jetstream) producer() (func([]byte) error, error) {
	js, _, err := j.context()
	if err != nil {
		return nil, err
	}
	return func(payload []byte) error {
		_, err := js.Publish(j.subject, payload)
		return err
	}, nil
}

func (j *jetstream) consumer(int) (func(int) (int, error), error) {
	js, _, err := j.context()
	if err != nil {
		return nil, err
	}
	sub, err := js.PullSubscribe(j.subject, "workers", nats.Bind(strings.ToUpper(j.subject), "workers"))
	if err != nil {
		return nil, err
	}
	return func(max int) (int, error) {
		msgs, err := sub.Fetch(max, nats.MaxWait(time.Second))
		if err != nil && err != nats.ErrTimeout {
			return 0, err
		}
		if j.seen != nil {
			for _, m := range msgs {
				j.seen(m.Data)
			}
		}
		if j.batch && len(msgs) > 0 {
			// A work-queue stream takes explicit acks only: the batch's acks go out back
			// to back on the connection, the last one confirmed (so all before it are).
			for _, m := range msgs[:len(msgs)-1] {
				if err := m.Ack(); err != nil {
					return 0, err
				}
			}
			return len(msgs), msgs[len(msgs)-1].AckSync()
		}
		for _, m := range msgs {
			if err := m.AckSync(); err != nil {
				return 0, err
			}
		}
		return len(msgs), nil
	}, nil
}

// Redis Streams: XADD, XREADGROUP with a consumer group, XACK per message.
type streams struct {
	addr, key string
	batch     bool
	seen      func([]byte)
}

func (r *streams) client() *redis.Client {
	return redis.NewClient(&redis.Options{Addr: r.addr, PoolSize: 1, MinIdleConns: 1})
}

func (r *streams) setup() error {
	return r.client().XGroupCreateMkStream(context.Background(), r.key, "workers", "$").Err()
}

func (r *streams) producer() (func([]byte) error, error) {
	c := r.client()
	return func(payload []byte) error {
		return c.XAdd(context.Background(), &redis.XAddArgs{
			Stream: r.key, Values: []any{"data", payload},
		}).Err()
	}, nil
}

func (r *streams) consumer(id int) (func(int) (int, error), error) {
	c := r.client()
	name := fmt.Sprintf("c%d", id)
	return func(max int) (int, error) {
		got, err := c.XReadGroup(context.Background(), &redis.XReadGroupArgs{
			Group: "workers", Consumer: name, Streams: []string{r.key, ">"},
			Count: int64(max), Block: time.Second,
		}).Result()
		if err == redis.Nil {
			return 0, nil
		}
		if err != nil {
			return 0, err
		}
		if r.seen != nil {
			for _, s := range got {
				for _, m := range s.Messages {
					if data, ok := m.Values["data"].(string); ok {
						r.seen([]byte(data))
					}
				}
			}
		}
		if r.batch {
			var ids []string
			for _, s := range got {
				for _, m := range s.Messages {
					ids = append(ids, m.ID)
				}
			}
			if len(ids) == 0 {
				return 0, nil
			}
			return len(ids), c.XAck(context.Background(), r.key, "workers", ids...).Err()
		}
		n := 0
		for _, s := range got {
			for _, m := range s.Messages {
				if err := c.XAck(context.Background(), r.key, "workers", m.ID).Err(); err != nil {
					return 0, err
				}
				n++
			}
		}
		return n, nil
	}, nil
}
