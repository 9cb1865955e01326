// Package logging is coco's logging application, the same as CCF's sample:
// users record messages under numeric ids in a private (encrypted in the
// ledger) or a public table, read them back, delete them, and read what a
// record held as of an earlier transaction.
package logging

import (
	"encoding/binary"
	"net/http"
	"strconv"

	"github.com/cocoledger/coco/app"
)

// The maps behind /app/log/private and /app/log/public.
const (
	PrivateMap = "records"
	PublicMap  = "public:records"
)

// App is the logging application.
type App struct{}

var _ app.Application = App{}

// Name implements app.Application.
func (App) Name() string { return "logging" }

// IndexedMaps implements app.Application: both tables support historical reads.
func (App) IndexedMaps() []string { return []string{PrivateMap, PublicMap} }

// Endpoints implements app.Application.
func (App) Endpoints() []app.Endpoint {
	var eps []app.Endpoint
	for _, t := range []struct{ path, m string }{{"/app/log/private", PrivateMap}, {"/app/log/public", PublicMap}} {
		m := t.m
		eps = append(eps,
			app.Endpoint{Method: http.MethodPost, Path: t.path, Mode: app.ReadWrite, Summary: "Record a message under an id",
				Handler: func(c *app.Context) (*app.Response, error) { return post(c, m) }},
			app.Endpoint{Method: http.MethodGet, Path: t.path, Mode: app.ReadOnly, Summary: "Read the message recorded under an id",
				Handler: func(c *app.Context) (*app.Response, error) { return get(c, m) }},
			app.Endpoint{Method: http.MethodDelete, Path: t.path, Mode: app.ReadWrite, Summary: "Delete the message recorded under an id",
				Handler: func(c *app.Context) (*app.Response, error) { return del(c, m) }},
			app.Endpoint{Method: http.MethodGet, Path: t.path + "/historical", Mode: app.Historical, Summary: "Read the message as of the transaction in x-ms-ccf-transaction-id",
				Handler: func(c *app.Context) (*app.Response, error) { return historical(c, m) }},
		)
	}
	return eps
}

type record struct {
	ID  *uint64 `json:"id"`
	Msg *string `json:"msg"`
}

type message struct {
	Msg string `json:"msg"`
}

func key(id uint64) string {
	var b [8]byte
	binary.BigEndian.PutUint64(b[:], id)
	return string(b[:])
}

func queryID(c *app.Context) (uint64, error) {
	s := c.Query.Get("id")
	if s == "" {
		return 0, app.BadRequest("query parameter id is required")
	}
	id, err := strconv.ParseUint(s, 10, 64)
	if err != nil {
		return 0, app.BadRequest("query parameter id must be an unsigned 64-bit integer, got %q", s)
	}
	return id, nil
}

func post(c *app.Context, m string) (*app.Response, error) {
	var r record
	if err := app.DecodeJSON(c.Body, &r); err != nil {
		return nil, err
	}
	if r.ID == nil || r.Msg == nil {
		return nil, app.BadRequest(`body must be {"id": <uint64>, "msg": <string>}`)
	}
	if err := c.Tx.Put(m, key(*r.ID), []byte(*r.Msg)); err != nil {
		return nil, err
	}
	return app.JSON(true), nil
}

func get(c *app.Context, m string) (*app.Response, error) {
	id, err := queryID(c)
	if err != nil {
		return nil, err
	}
	v, ok := c.Tx.Get(m, key(id))
	if !ok {
		return nil, app.NotFound("no message with id %d", id)
	}
	return app.JSON(message{Msg: string(v)}), nil
}

func del(c *app.Context, m string) (*app.Response, error) {
	id, err := queryID(c)
	if err != nil {
		return nil, err
	}
	if err := c.Tx.Delete(m, key(id)); err != nil {
		return nil, err
	}
	return app.JSON(true), nil
}

func historical(c *app.Context, m string) (*app.Response, error) {
	id, err := queryID(c)
	if err != nil {
		return nil, err
	}
	v, ok, err := c.Historical.Get(m, key(id))
	if err != nil {
		return nil, err
	}
	if !ok {
		return &app.Response{Status: http.StatusNoContent}, nil
	}
	return app.JSON(message{Msg: string(v)}), nil
}
