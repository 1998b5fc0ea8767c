package cli_test

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/switchboard-dev/switchboard/internal/app"
)

// listing is the JSON output of `switchboard connectors --format json`.
type listing struct {
	Kinds []struct {
		Kind    string   `json:"kind"`
		Doc     string   `json:"doc"`
		Config  []cfgKey `json:"config"`
		Actions []struct {
			Name    string `json:"name"`
			Doc     string `json:"doc"`
			Outputs string `json:"outputs"`
			Writes  string `json:"writes"`
			Inputs  []struct {
				Name     string `json:"name"`
				Required bool   `json:"required"`
				Doc      string `json:"doc"`
			} `json:"inputs"`
		} `json:"actions"`
	} `json:"kinds"`
}

type cfgKey struct {
	Key  string   `json:"key"`
	Type string   `json:"type"`
	Doc  string   `json:"doc"`
	Keys []cfgKey `json:"keys"`
}

// flatten returns dotted key path → type.
func flatten(prefix string, keys []cfgKey, out map[string]string) map[string]string {
	for _, k := range keys {
		out[prefix+k.Key] = k.Type
		flatten(prefix+k.Key+".", k.Keys, out)
	}
	return out
}

func TestConnectorsText(t *testing.T) {
	t.Parallel()
	code, out, errOut := run(t, nil, "connectors")
	require.Equal(t, 0, code, errOut)

	// Every kind of the registry the server uses, with every action; each
	// required input is on a line marked required.
	for _, k := range app.Registry().Kinds() {
		_, section, ok := strings.Cut(out, "kind: "+k.Name+"\n")
		require.True(t, ok, "kind %s missing:\n%s", k.Name, out)
		section, _, _ = strings.Cut(section, "\nkind: ")
		require.Contains(t, section, k.Doc)
		for _, a := range k.Actions {
			_, block, ok := strings.Cut(section, "SYSTEM."+a.Name+" ")
			require.True(t, ok, "action %s.%s missing", k.Name, a.Name)
			block, _, _ = strings.Cut(block, "SYSTEM.")
			for _, in := range a.Inputs {
				want := "optional"
				if in.Required {
					want = "required"
				}
				require.Regexp(t, `(?m)^      `+in.Name+` +`+want+` `, block, "%s.%s input %s", k.Name, a.Name, in.Name)
			}
		}
	}
	require.Regexp(t, `(?m)^    auth\.oauth2\.client_secret +secret +`, out)
	require.Regexp(t, `(?m)^    smtp\.port +integer +`, out)
	require.Contains(t, out, "writes entity: customer")
}

func TestConnectorsJSON(t *testing.T) {
	t.Parallel()
	code, out, errOut := run(t, nil, "connectors", "--format", "json")
	require.Equal(t, 0, code, errOut)
	var got listing
	require.NoError(t, json.Unmarshal([]byte(out), &got))

	reg := app.Registry()
	require.Len(t, got.Kinds, len(reg.Kinds()))
	for i, k := range reg.Kinds() {
		gk := got.Kinds[i]
		require.Equal(t, k.Name, gk.Kind)
		require.Equal(t, k.Doc, gk.Doc)
		require.NotEmpty(t, gk.Config, k.Name)
		require.Len(t, gk.Actions, len(k.Actions), k.Name)
		for j, a := range k.Actions {
			ga := gk.Actions[j]
			require.Equal(t, a.Name, ga.Name)
			require.Equal(t, a.Outputs, ga.Outputs)
			require.Equal(t, a.Writes, ga.Writes)
			require.NotEmpty(t, ga.Outputs, "%s.%s has no Outputs", k.Name, a.Name)
			require.Len(t, ga.Inputs, len(a.Inputs))
			for n, in := range a.Inputs {
				require.Equal(t, in.Name, ga.Inputs[n].Name)
				require.Equal(t, in.Required, ga.Inputs[n].Required, "%s.%s input %s", k.Name, a.Name, in.Name)
			}
		}
	}

	types := map[string]map[string]string{}
	for _, k := range got.Kinds {
		types[k.Kind] = flatten("", k.Config, map[string]string{})
	}
	for kind, want := range map[string]map[string]string{
		"http": {
			"base_url": "string", "headers": "map of string", "auth": "object", "auth.bearer": "secret",
			"auth.oauth2": "object", "auth.oauth2.client_secret": "secret", "auth.oauth2.scopes": "list of string",
			"timeout": "duration", "permanent_statuses": "list of integer", "transient_statuses": "list of integer",
		},
		"hubspot": {"token": "secret", "timeout": "duration"},
		"email":   {"smtp": "object", "smtp.port": "integer", "smtp.starttls": "bool", "sendgrid.api_key": "secret"},
	} {
		for key, typ := range want {
			require.Equal(t, typ, types[kind][key], "%s %s", kind, key)
		}
	}

	writes := map[string]string{}
	for _, k := range got.Kinds {
		for _, a := range k.Actions {
			writes[k.Kind+"."+a.Name] = a.Writes
		}
	}
	require.Equal(t, "customer", writes["hubspot.upsert_contact"])
	require.Equal(t, "customer", writes["hubspot.assign_owner"])
	require.Equal(t, "deal", writes["hubspot.move_deal_stage"])
	require.Empty(t, writes["http.request"], "a generic step declares what it writes")
	require.Empty(t, writes["twilio.send_sms"])
}

func TestConnectorsArgs(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name     string
		args     []string
		wantCode int
		wantOut  string // in stdout
		wantErr  string // in stderr
	}{
		{name: "one kind", args: []string{"hubspot"}, wantOut: "kind: hubspot\n"},
		{name: "flag after kind", args: []string{"twilio", "--format", "json"}, wantOut: `"kind": "twilio"`},
		{name: "unknown kind", args: []string{"salesforce"}, wantCode: 2, wantErr: `unknown kind "salesforce" (known: email, http`},
		{name: "bad format", args: []string{"--format", "xml"}, wantCode: 2, wantErr: `--format: want text or json, got "xml"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			code, out, errOut := run(t, nil, append([]string{"connectors"}, tt.args...)...)
			require.Equal(t, tt.wantCode, code, errOut)
			require.Contains(t, out, tt.wantOut)
			require.Contains(t, errOut, tt.wantErr)
			if tt.name == "one kind" {
				require.Equal(t, 1, strings.Count(out, "kind: "))
			}
		})
	}
}
