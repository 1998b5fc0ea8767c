package poll_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strconv"
	"sync"
	"testing"
)

// fakeCRM is the owner of customers: GET /crm/contacts pages its contacts
// (HubSpot style: every property a string) with an opaque token in
// .paging.next.after.
type fakeCRM struct {
	srv      *httptest.Server
	pageSize int

	mu       sync.Mutex
	contacts []map[string]any
	requests int
}

func newFakeCRM(t testing.TB, pageSize int, contacts ...map[string]any) *fakeCRM {
	f := &fakeCRM{pageSize: pageSize, contacts: contacts}
	f.srv = httptest.NewServer(http.HandlerFunc(f.serve))
	t.Cleanup(f.srv.Close)
	return f
}

func (f *fakeCRM) serve(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.requests++
	if r.URL.Path != "/crm/contacts" || r.URL.Query().Get("archived") != "false" {
		http.Error(w, "no such listing", http.StatusNotFound)
		return
	}
	start := 0
	if after := r.URL.Query().Get("after"); after != "" {
		start, _ = strconv.Atoi(after)
	}
	end := min(start+f.pageSize, len(f.contacts))
	body := map[string]any{"results": f.contacts[start:end]}
	if end < len(f.contacts) {
		body["paging"] = map[string]any{"next": map[string]any{"after": strconv.Itoa(end)}}
	}
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(body)
}

// fakeAccounting mirrors customers: GET /acct/customers?page=N&per_page=M
// (pages from 1; a short page is the last), its own field names, numbers
// as numbers.
type fakeAccounting struct {
	srv      *httptest.Server
	pageSize int

	mu        sync.Mutex
	customers []map[string]any
}

func newFakeAccounting(t testing.TB, pageSize int, customers ...map[string]any) *fakeAccounting {
	f := &fakeAccounting{pageSize: pageSize, customers: customers}
	f.srv = httptest.NewServer(http.HandlerFunc(f.serve))
	t.Cleanup(f.srv.Close)
	return f
}

func (f *fakeAccounting) serve(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	defer f.mu.Unlock()
	q := r.URL.Query()
	if r.URL.Path != "/acct/customers" || q.Get("per_page") != strconv.Itoa(f.pageSize) {
		http.Error(w, "no such listing", http.StatusNotFound)
		return
	}
	page, err := strconv.Atoi(q.Get("page"))
	if err != nil || page < 1 {
		http.Error(w, "bad page", http.StatusBadRequest)
		return
	}
	start := min((page-1)*f.pageSize, len(f.customers))
	end := min(start+f.pageSize, len(f.customers))
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(map[string]any{"customers": f.customers[start:end], "page": page})
}

// reconcileConfig reconciles crm's contacts (the owner) with acct's
// customers (the mirror) on phone and name; a flow repairs mismatches.
// ownerPages is the owner's max_pages; extra lines go under reconcile:.
func reconcileConfig(crm *fakeCRM, acct *fakeAccounting, ownerPages int, extra string) string {
	return fmt.Sprintf(`version: 1
systems:
  crm: { kind: http, base_url: %s/crm }
  acct: { kind: http, base_url: %s/acct }
sources:
  customer_drift:
    entity: customer
    reconcile:
      every: 1s
      owner:
        system: crm
        path: /contacts
        query: { archived: '"false"' }
        items: .results[]
        key: (.email // "") | ascii_downcase
        paginate: { next: .paging.next.after, param: after }
        max_pages: %d
      mirror:
        system: acct
        path: /customers
        items: .customers[]
        key: .email | ascii_downcase
        paginate: { page: page, size: %d, size_param: per_page }
      fields:
        phone: .phone
        name: { owner: .firstname, mirror: .first_name }
%s
flows:
  repair:
    on: customer_drift
    when: .type == "field_mismatch"
    steps:
      - id: put
        do: acct.request
        with: { method: '"PUT"', path: '"/customers/\(.mirror.id)"', body: '{first_name: .owner.firstname, phone: .owner.phone}' }
`, crm.srv.URL, acct.srv.URL, ownerPages, acct.pageSize, extra)
}
