package hubspot

import (
	"context"
	"errors"
	"net/http"
	"net/url"
	"time"

	"github.com/switchboard-dev/switchboard/internal/connector"
)

// HubSpot-defined association type ids (CRM v4 "associations/labels"):
// which way round and between which object types an association goes.
const (
	noteToContact = 202
	taskToContact = 204
	dealToContact = 3
)

// call is one HubSpot API request an action makes.
type call struct {
	method string
	path   string // escaped, joined under base_url
	query  url.Values
	body   any // JSON-encoded; nil sends no body
	// create marks a POST that creates an object: a 409 saying the object
	// already exists is success for it (see conflictOutput).
	create bool
	// batch marks a batch endpoint answering {results:[…], errors:[…]}
	// for our single input: the output is results[0].
	batch bool
}

// actionDef is one action: its documentation and how it builds its call.
type actionDef struct {
	spec  connector.ActionSpec
	build func(in *inputs, now time.Time) call
}

// JSON bodies of the CRM v3 object endpoints.
type (
	propertiesBody struct {
		Properties map[string]string `json:"properties"`
	}
	createBody struct {
		Properties map[string]string `json:"properties"`
		// Associations is required by the v3 create schema: [] when empty.
		Associations []association `json:"associations"`
	}
	association struct {
		To    objectID          `json:"to"`
		Types []associationType `json:"types"`
	}
	objectID struct {
		ID string `json:"id"`
	}
	associationType struct {
		Category string `json:"associationCategory"`
		TypeID   int    `json:"associationTypeId"`
	}
	upsertBody struct {
		Inputs []upsertInput `json:"inputs"`
	}
	upsertInput struct {
		IDProperty string            `json:"idProperty"`
		ID         string            `json:"id"`
		Properties map[string]string `json:"properties"`
	}
)

func associationsTo(id string, typeID int) []association {
	if id == "" {
		return []association{}
	}
	return []association{{To: objectID{ID: id}, Types: []associationType{{Category: "HUBSPOT_DEFINED", TypeID: typeID}}}}
}

func objectPath(objectType, id string) string {
	return "/crm/v3/objects/" + objectType + "/" + url.PathEscape(id)
}

func idPropertyQuery(idProperty string) url.Values {
	if idProperty == "" {
		return nil
	}
	return url.Values{"idProperty": {idProperty}}
}

const (
	docProperties = "Object of HubSpot property names to values. Numbers and bools are sent as strings, null clears a property, a list becomes a multi-select value (a;b)."
	docIDProperty = "Name of a unique property identifying the object instead of its id, e.g. \"email\"."
	docTimestamp  = "When it happened (hs_timestamp): an RFC 3339 time or Unix milliseconds. Defaults to now."
)

// actions lists every action of the kind, in documentation order. Ids
// (read by inputs.id) and timestamps take a string or an integer, a shape
// no InputType names, so their Type is TypeAny.
var actions = []actionDef{
	{
		spec: connector.ActionSpec{
			Name:    "upsert_contact",
			Doc:     "Creates or updates the contact with this e-mail address (batch upsert by email).",
			Outputs: "the contact {id, properties, new, createdAt, …}; new reports whether it was created",
			Writes:  "customer",
			Inputs: []connector.Input{
				{Name: "email", Required: true, Type: connector.TypeString, Doc: "The contact's e-mail address, its unique key."},
				{Name: "properties", Type: connector.TypeObject, Doc: docProperties},
			},
		},
		build: func(in *inputs, _ time.Time) call {
			email := in.str("email", true)
			props := in.properties("properties", false)
			return call{
				method: http.MethodPost,
				path:   "/crm/v3/objects/contacts/batch/upsert",
				body:   upsertBody{Inputs: []upsertInput{{IDProperty: "email", ID: email, Properties: props}}},
				create: true,
				batch:  true,
			}
		},
	},
	{
		spec: connector.ActionSpec{
			Name:    "update_contact",
			Doc:     "Updates properties of an existing contact.",
			Outputs: "the contact {id, properties, …}",
			Writes:  "customer",
			Inputs: []connector.Input{
				{Name: "id", Required: true, Type: connector.TypeAny, Doc: "The contact's id (or its id_property value)."},
				{Name: "properties", Required: true, Type: connector.TypeObject, Doc: docProperties},
				{Name: "id_property", Type: connector.TypeString, Doc: docIDProperty},
			},
		},
		build: func(in *inputs, _ time.Time) call {
			return call{
				method: http.MethodPatch,
				path:   objectPath("contacts", in.id("id", true)),
				query:  idPropertyQuery(in.str("id_property", false)),
				body:   propertiesBody{Properties: in.properties("properties", true)},
			}
		},
	},
	{
		spec: connector.ActionSpec{
			Name:    "assign_owner",
			Doc:     "Sets a contact's owner (hubspot_owner_id).",
			Outputs: "the contact {id, properties, …}",
			Writes:  "customer",
			Inputs: []connector.Input{
				{Name: "id", Required: true, Type: connector.TypeAny, Doc: "The contact's id."},
				{Name: "owner_id", Required: true, Type: connector.TypeAny, Doc: "The owner's (HubSpot user's) owner id."},
			},
		},
		build: func(in *inputs, _ time.Time) call {
			return call{
				method: http.MethodPatch,
				path:   objectPath("contacts", in.id("id", true)),
				body:   propertiesBody{Properties: map[string]string{"hubspot_owner_id": in.id("owner_id", true)}},
			}
		},
	},
	{
		spec: connector.ActionSpec{
			Name:    "create_note",
			Doc:     "Adds a note to a contact's timeline.",
			Outputs: "the note {id, properties, …}",
			Writes:  "note",
			Inputs: []connector.Input{
				{Name: "contact_id", Required: true, Type: connector.TypeAny, Doc: "The contact's id."},
				{Name: "body", Required: true, Type: connector.TypeString, Doc: "The note's text (hs_note_body); HubSpot renders simple HTML."},
				{Name: "timestamp", Type: connector.TypeAny, Doc: docTimestamp},
				{Name: "properties", Type: connector.TypeObject, Doc: "More note properties, e.g. hubspot_owner_id. " + docProperties},
			},
		},
		build: func(in *inputs, now time.Time) call {
			contact := in.id("contact_id", true)
			props := in.properties("properties", false)
			if props == nil {
				return call{}
			}
			props["hs_note_body"] = in.str("body", true)
			if in.m["timestamp"] != nil || props["hs_timestamp"] == "" {
				props["hs_timestamp"] = in.timestamp("timestamp", now)
			}
			return call{
				method: http.MethodPost,
				path:   "/crm/v3/objects/notes",
				body:   createBody{Properties: props, Associations: associationsTo(contact, noteToContact)},
				create: true,
			}
		},
	},
	{
		spec: connector.ActionSpec{
			Name:    "create_task",
			Doc:     "Creates a task on a contact.",
			Outputs: "the task {id, properties, …}",
			Writes:  "task",
			Inputs: []connector.Input{
				{Name: "contact_id", Required: true, Type: connector.TypeAny, Doc: "The contact's id."},
				{Name: "subject", Required: true, Type: connector.TypeString, Doc: "The task's title (hs_task_subject)."},
				{Name: "body", Type: connector.TypeString, Doc: "The task's notes (hs_task_body)."},
				{Name: "timestamp", Type: connector.TypeAny, Doc: "When the task is due (hs_timestamp): an RFC 3339 time or Unix milliseconds. Defaults to now."},
				{Name: "properties", Type: connector.TypeObject, Doc: "More task properties, e.g. hs_task_priority, hubspot_owner_id. " + docProperties},
			},
		},
		build: func(in *inputs, now time.Time) call {
			contact := in.id("contact_id", true)
			props := in.properties("properties", false)
			if props == nil {
				return call{}
			}
			props["hs_task_subject"] = in.str("subject", true)
			if body := in.str("body", false); body != "" {
				props["hs_task_body"] = body
			}
			if in.m["timestamp"] != nil || props["hs_timestamp"] == "" {
				props["hs_timestamp"] = in.timestamp("timestamp", now)
			}
			return call{
				method: http.MethodPost,
				path:   "/crm/v3/objects/tasks",
				body:   createBody{Properties: props, Associations: associationsTo(contact, taskToContact)},
				create: true,
			}
		},
	},
	{
		spec: connector.ActionSpec{
			Name:    "create_deal",
			Doc:     "Creates a deal, optionally associated with a contact.",
			Outputs: "the deal {id, properties, …}",
			Writes:  "deal",
			Inputs: []connector.Input{
				{Name: "properties", Required: true, Type: connector.TypeObject, Doc: "Deal properties: dealname (required), dealstage, pipeline, amount, closedate, … " + docProperties},
				{Name: "contact_id", Type: connector.TypeAny, Doc: "A contact to associate the deal with."},
			},
		},
		build: func(in *inputs, _ time.Time) call {
			props := in.properties("properties", true)
			if props != nil && props["dealname"] == "" {
				in.fail("properties", errors.New(`key "dealname": required`))
			}
			return call{
				method: http.MethodPost,
				path:   "/crm/v3/objects/deals",
				body:   createBody{Properties: props, Associations: associationsTo(in.id("contact_id", false), dealToContact)},
				create: true,
			}
		},
	},
	{
		spec: connector.ActionSpec{
			Name:    "update_deal",
			Doc:     "Updates properties of an existing deal.",
			Outputs: "the deal {id, properties, …}",
			Writes:  "deal",
			Inputs: []connector.Input{
				{Name: "id", Required: true, Type: connector.TypeAny, Doc: "The deal's id (or its id_property value)."},
				{Name: "properties", Required: true, Type: connector.TypeObject, Doc: docProperties},
				{Name: "id_property", Type: connector.TypeString, Doc: docIDProperty},
			},
		},
		build: func(in *inputs, _ time.Time) call {
			return call{
				method: http.MethodPatch,
				path:   objectPath("deals", in.id("id", true)),
				query:  idPropertyQuery(in.str("id_property", false)),
				body:   propertiesBody{Properties: in.properties("properties", true)},
			}
		},
	},
	{
		spec: connector.ActionSpec{
			Name:    "move_deal_stage",
			Doc:     "Moves a deal to another stage (dealstage), optionally in another pipeline.",
			Outputs: "the deal {id, properties, …}",
			Writes:  "deal",
			Inputs: []connector.Input{
				{Name: "id", Required: true, Type: connector.TypeAny, Doc: "The deal's id."},
				{Name: "dealstage", Required: true, Type: connector.TypeAny, Doc: "The internal id of the target stage, e.g. \"closedwon\"."},
				{Name: "pipeline", Type: connector.TypeAny, Doc: "The internal id of the stage's pipeline, when it is not the deal's current one."},
			},
		},
		build: func(in *inputs, _ time.Time) call {
			props := map[string]string{"dealstage": in.id("dealstage", true)}
			if p := in.id("pipeline", false); p != "" {
				props["pipeline"] = p
			}
			return call{
				method: http.MethodPatch,
				path:   objectPath("deals", in.id("id", true)),
				body:   propertiesBody{Properties: props},
			}
		},
	},
	{
		spec: connector.ActionSpec{
			Name:    "associate_deal_contact",
			Doc:     "Associates a deal with a contact (default association; repeating it is harmless).",
			Outputs: "HubSpot's answer describing the association",
			Writes:  "deal",
			Inputs: []connector.Input{
				{Name: "deal_id", Required: true, Type: connector.TypeAny, Doc: "The deal's id."},
				{Name: "contact_id", Required: true, Type: connector.TypeAny, Doc: "The contact's id."},
			},
		},
		build: func(in *inputs, _ time.Time) call {
			deal, contact := in.id("deal_id", true), in.id("contact_id", true)
			return call{
				method: http.MethodPut,
				path:   "/crm/v4/objects/deals/" + url.PathEscape(deal) + "/associations/default/contacts/" + url.PathEscape(contact),
			}
		},
	},
}

// action is one action of one system.
type action struct {
	sys *system
	def actionDef
}

// Do validates the inputs (problems are permanent), makes the call and
// classifies HubSpot's answer (see classify).
func (a *action) Do(ctx context.Context, req connector.Request) (connector.Result, error) {
	c, err := a.def.parse(req.Input, a.sys.nowFunc())
	if err != nil {
		return connector.Result{}, connector.Permanent(err)
	}
	return a.sys.do(ctx, c, req.IdempotencyKey)
}

// parse checks a step's `with:` values and builds the call they ask for.
func (d actionDef) parse(m map[string]any, now time.Time) (call, error) {
	in := &inputs{m: m}
	accepted := make([]string, len(d.spec.Inputs))
	for i, inp := range d.spec.Inputs {
		accepted[i] = inp.Name
	}
	in.checkKnown(accepted)
	c := d.build(in, now)
	return c, in.err
}
