package ownership_test

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/switchboard-dev/switchboard/internal/ownership"
)

// loop joins a CRM and a scheduler both ways, with a web form feeding the
// CRM and a three-system cycle through accounting.
func loop() *ownership.Graph {
	return &ownership.Graph{Edges: []ownership.Edge{
		{From: "crm", To: "sched", Flow: "crm_to_sched", Step: "put", Entity: "customer"},
		{From: "sched", To: "crm", Flow: "sched_to_crm", Step: "put", Entity: "customer"},
		{From: "source web_form", To: "crm", Flow: "lead", Step: "contact", Entity: "customer"},
		{From: "sched", To: "books", Flow: "bill", Step: "invoice", Entity: "invoice"},
		{From: "books", To: "crm", Flow: "paid", Step: "note"},
	}}
}

func TestCycles(t *testing.T) {
	t.Parallel()
	g := loop()
	require.Equal(t, [][]string{{"crm", "sched"}, {"books", "crm", "sched"}}, g.Cycles())
	require.Equal(t, "crm → sched → crm: crm's events lead to writes in sched (crm_to_sched.put (customer)), sched's events lead to writes in crm (sched_to_crm.put (customer))",
		g.DescribeCycle([]string{"crm", "sched"}))
	require.Empty(t, (&ownership.Graph{Edges: []ownership.Edge{{From: "a", To: "b"}, {From: "b", To: "c"}}}).Cycles())
}

func TestRender(t *testing.T) {
	t.Parallel()
	tests := []struct {
		format string
		want   string
	}{
		{ownership.FormatText, `  books → crm  paid.note
  crm → sched  crm_to_sched.put (customer)
  sched → books  bill.invoice (invoice)
  sched → crm  sched_to_crm.put (customer)
  source web_form → crm  lead.contact (customer)
  CYCLE crm → sched → crm
  CYCLE books → crm → sched → books
`},
		{ownership.FormatDot, `digraph switchboard {
  rankdir=LR;
  node [shape=box];
  "books" [label="books"];
  "crm" [label="crm"];
  "sched" [label="sched"];
  "source web_form" [label="source web_form" shape=ellipse];
  "books" -> "crm" [label="paid.note" color=red];
  "crm" -> "sched" [label="crm_to_sched.put (customer)" color=red];
  "sched" -> "books" [label="bill.invoice (invoice)" color=red];
  "sched" -> "crm" [label="sched_to_crm.put (customer)" color=red];
  "source web_form" -> "crm" [label="lead.contact (customer)"];
}
`},
		{ownership.FormatMermaid, `flowchart LR
  n0["books"]
  n1["crm"]
  n2["sched"]
  n3(["source web_form"])
  n0 -->|"paid.note"| n1
  n1 -->|"crm_to_sched.put (customer)"| n2
  n2 -->|"bill.invoice (invoice)"| n0
  n2 -->|"sched_to_crm.put (customer)"| n1
  n3 -->|"lead.contact (customer)"| n1
  linkStyle 0,1,2,3 stroke:red
`},
	}
	for _, tt := range tests {
		t.Run(tt.format, func(t *testing.T) {
			t.Parallel()
			var b strings.Builder
			require.NoError(t, loop().Render(&b, tt.format))
			require.Equal(t, tt.want, b.String())
		})
	}
	require.ErrorContains(t, loop().Render(&strings.Builder{}, "svg"), `unknown format "svg"`)
}

func TestMapRender(t *testing.T) {
	t.Parallel()
	var b strings.Builder
	require.NoError(t, ownership.Map{
		{Name: "job", Owner: "sched", Mirrors: []string{"crm"}, OnConflict: "drop", Declared: true},
		{Name: "customer", Owner: "crm", Mirrors: []string{"sched"}, Fields: map[string]string{"phone": "phones"}, OnConflict: "propose", Declared: true},
		{Name: "deal", Owner: "crm"},
	}.Render(&b))
	require.Equal(t, `  customer         owner crm, mirrors sched, phone owned by phones; conflicts go to flow propose
  deal             owner crm (not declared: the only system it is written to)
  job              owner sched, mirrors crm; conflicts are dropped
`, b.String())
}
