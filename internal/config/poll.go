package config

import "time"

// Timing says when a timed source (poll, schedule, reconcile) runs: every
// interval, or on a cron schedule in a time zone. Exactly one of Every and
// Cron is set.
type Timing struct {
	// Every is the interval between runs, e.g. 5m.
	Every time.Duration `yaml:"every"`
	// Cron is a five-field cron expression ("0 2 * * *": 02:00 every day),
	// or a descriptor such as @daily.
	Cron string `yaml:"cron"`
	// Timezone is the IANA zone Cron is read in (Europe/Paris). Default UTC.
	Timezone string `yaml:"timezone"`
}

// Listing is a paged GET of a system's records: the request, where the
// records are in each answer, and how to ask for the next page.
type Listing struct {
	// System is the system called: a kind that can be polled (http).
	System string `yaml:"system"`
	// Path is the path under the system's base_url; "$cursor" in it is
	// replaced by the cursor, escaped.
	Path string `yaml:"path"`
	// Query are query parameters: each value is jq, with $cursor bound to
	// the stored cursor (null before the first one).
	Query map[string]string `yaml:"query"`
	// Items is jq over an answer giving its records, e.g. .jobs[].
	Items string `yaml:"items"`
	// Paginate says how to ask for the next page. Without it one request
	// is one run.
	Paginate *Paginate `yaml:"paginate"`
	// MaxPages bounds the pages one run reads. Default 100.
	MaxPages int `yaml:"max_pages"`
}

// Paginate is one of five paging styles, chosen by which keys are set:
//
//   - next + param: an opaque token in the body (jq), sent back as param;
//     null or "" ends.
//   - page (+ first, size, size_param): a page number parameter.
//   - offset (+ limit, limit_param): an offset parameter.
//   - link: follow the RFC 8288 Link header with this rel (usually next).
//   - has_more + after (+ after_value): Stripe style; after is sent the id
//     of the page's last record.
type Paginate struct {
	Next  string `yaml:"next"`
	Param string `yaml:"param"`

	Page      string `yaml:"page"`
	First     *int   `yaml:"first"`
	Size      int    `yaml:"size"`
	SizeParam string `yaml:"size_param"`

	Offset     string `yaml:"offset"`
	Limit      int    `yaml:"limit"`
	LimitParam string `yaml:"limit_param"`

	Link string `yaml:"link"`

	HasMore    string `yaml:"has_more"`
	After      string `yaml:"after"`
	AfterValue string `yaml:"after_value"`
}

// Poll makes a source call a system's API on a schedule, from a stored
// cursor, and turn each new or changed record into an event.
type Poll struct {
	Timing  `yaml:",inline"`
	Listing `yaml:",inline"`
	// ID is jq over a record giving its id. Required.
	ID string `yaml:"id"`
	// Version is jq over a record giving its version (updated_at, say).
	// Default: a hash of the record.
	Version string `yaml:"version"`
	// Cursor is jq over the last record of a page ($response is the whole
	// answer) giving the cursor the next run starts from. Without it the
	// source lists everything each run and relies on id + version alone.
	Cursor string `yaml:"cursor"`
	// Start is the cursor of the very first run. Default: the time of the
	// first run, RFC 3339 in UTC.
	Start string `yaml:"start"`
	// BackstopFor names a webhook source this poll backs up: records are
	// stored as that source's events, keyed like its webhooks, so a record
	// the webhook already delivered is not emitted again.
	BackstopFor string `yaml:"backstop_for"`
}
