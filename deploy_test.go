package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"stringsvc/internal/testenv"
)

// Tests of deploy/: the alerting rules (deploy/prometheus/alerts.yml), the
// Grafana dashboard (deploy/grafana/stringsvc.json) and the example
// scrape configuration, with Prometheus's own tools and a real Prometheus
// scraping a proxy and its backends, so that neither can drift from the
// metrics the program exports.

const prometheusHint = "install it with: apt-get install -y prometheus (it brings promtool)"

// promtoolRun runs promtool with args in deploy/prometheus and stdin, and
// fails the test with its output if it does not exit 0.
func promtoolRun(t *testing.T, promtool string, stdin io.Reader, args ...string) string {
	t.Helper()
	cmd := exec.Command(promtool, args...)
	cmd.Dir = filepath.Join("deploy", "prometheus")
	cmd.Stdin = stdin
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Errorf("promtool %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

func TestPromtool(t *testing.T) {
	promtool := testenv.RequireTool(t, "promtool", prometheusHint)
	t.Parallel()
	t.Run("check rules", func(t *testing.T) { promtoolRun(t, promtool, nil, "check", "rules", "alerts.yml") })
	t.Run("test rules", func(t *testing.T) { promtoolRun(t, promtool, nil, "test", "rules", "alerts_test.yml") })
	t.Run("check config", func(t *testing.T) { promtoolRun(t, promtool, nil, "check", "config", "prometheus.yml") })
	t.Run("check metrics", func(t *testing.T) {
		// A backend with gRPC, and a proxy with a breaker and a retry or
		// two behind it: every family the program exports.
		backend := startStringsvc(t, "-grpc.listen", "127.0.0.1:0")
		proxy := startStringsvc(t, "-proxy", backend.addr+","+testenv.FreeAddr(t))
		for range 4 {
			postTraced(t, "http://"+proxy.addr+"/uppercase", `{"s":"hello"}`, traceparent{})
		}
		for _, r := range []*stringsvcRun{backend, proxy} {
			metrics := getBody(t, "http://"+r.addr+"/metrics")
			if out := promtoolRun(t, promtool, strings.NewReader(metrics), "check", "metrics"); out != "" {
				t.Errorf("promtool check metrics on %s/metrics: %s", r.addr, out)
			}
		}
	})
}

func getBody(tb testing.TB, url string) string {
	tb.Helper()
	resp, err := http.Get(url)
	if err != nil {
		tb.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		tb.Fatalf("GET %s = %d, %v; want 200", url, resp.StatusCode, err)
	}
	return string(b)
}

// grafanaDashboard is what the test reads of a Grafana dashboard.
type grafanaDashboard struct {
	UID           string         `json:"uid"`
	Title         string         `json:"title"`
	SchemaVersion int            `json:"schemaVersion"`
	Panels        []grafanaPanel `json:"panels"`
	Templating    struct {
		List []struct {
			Name, Type string
			Query      any
		} `json:"list"`
	} `json:"templating"`
}

type grafanaPanel struct {
	ID         int    `json:"id"`
	Type       string `json:"type"`
	Title      string `json:"title"`
	Datasource *struct {
		Type, UID string
	} `json:"datasource"`
	GridPos *struct{ H, W, X, Y int } `json:"gridPos"`
	Targets []struct {
		RefID string `json:"refId"`
		Expr  string `json:"expr"`
	} `json:"targets"`
}

func readDashboard(tb testing.TB) grafanaDashboard {
	tb.Helper()
	b, err := os.ReadFile(filepath.Join("deploy", "grafana", "stringsvc.json"))
	if err != nil {
		tb.Fatal(err)
	}
	var d grafanaDashboard
	dec := json.NewDecoder(bytes.NewReader(b))
	if err := dec.Decode(&d); err != nil {
		tb.Fatalf("deploy/grafana/stringsvc.json: %v", err)
	}
	return d
}

// TestGrafanaDashboard checks what Grafana needs of an imported dashboard
// (it cannot be installed here to load it): a uid and a title, a current
// schema version, the data source as a variable, and panels that each
// have a place, a type Grafana ships and queries of that data source.
func TestGrafanaDashboard(t *testing.T) {
	t.Parallel()
	d := readDashboard(t)
	if d.UID == "" || d.Title == "" || d.SchemaVersion < 36 {
		t.Errorf("dashboard uid %q, title %q, schemaVersion %d; want both set and a schema of Grafana 9 or later",
			d.UID, d.Title, d.SchemaVersion)
	}
	vars := make(map[string]string)
	for _, v := range d.Templating.List {
		vars[v.Name] = v.Type
	}
	if vars["datasource"] != "datasource" || vars["job"] != "query" {
		t.Errorf("template variables %v; want datasource (a data source) and job (a query)", vars)
	}
	shipped := map[string]bool{"row": true, "timeseries": true, "state-timeline": true, "stat": true, "gauge": true}
	ids := make(map[int]bool)
	queries := 0
	for _, p := range d.Panels {
		if ids[p.ID] || p.ID == 0 {
			t.Errorf("panel %q: id %d missing or used twice", p.Title, p.ID)
		}
		ids[p.ID] = true
		if !shipped[p.Type] || p.GridPos == nil || p.GridPos.W == 0 || p.GridPos.H == 0 || p.Title == "" {
			t.Errorf("panel %q: type %q, gridPos %v; want a titled panel of a built-in type with a place", p.Title, p.Type, p.GridPos)
		}
		if p.Type == "row" {
			continue
		}
		if p.Datasource == nil || p.Datasource.UID != "${datasource}" || len(p.Targets) == 0 {
			t.Errorf("panel %q: datasource %v, %d targets; want queries of ${datasource}", p.Title, p.Datasource, len(p.Targets))
		}
		for _, tg := range p.Targets {
			queries++
			if tg.RefID == "" || !strings.Contains(tg.Expr, `job=~"$job"`) {
				t.Errorf("panel %q target %q: %q; want a refId and a selector on $job", p.Title, tg.RefID, tg.Expr)
			}
		}
	}
	if queries == 0 {
		t.Error("the dashboard has no queries")
	}
}

// dashboardQueries returns the dashboard's queries with Grafana's
// variables replaced as Grafana would for "All jobs": $__rate_interval by
// window, $job by any job.
func dashboardQueries(tb testing.TB, window string) map[string]string {
	tb.Helper()
	queries := make(map[string]string)
	for _, p := range readDashboard(tb).Panels {
		for _, tg := range p.Targets {
			q := strings.NewReplacer("$__rate_interval", window, "$job", ".+").Replace(tg.Expr)
			if strings.Contains(q, "$") {
				tb.Errorf("panel %q target %s: %q has a variable the test does not know", p.Title, tg.RefID, tg.Expr)
			}
			queries[fmt.Sprintf("panel %q %s", p.Title, tg.RefID)] = q
		}
	}
	return queries
}

// alertSignal is an alert's expression without its threshold: every alert
// is "<signal> <comparison> <number>" (alerts.yml says so), and the signal
// is what must have data for the alert to be able to fire.
var alertSignal = regexp.MustCompile(`^(.+?)\s*(?:==|!=|>=|<=|>|<)\s*(?:bool\s+)?[-+0-9.eE]+$`)

// promServer is a Prometheus server a test started.
type promServer struct {
	url  string
	proc *testenv.Process
}

// startPrometheus runs Prometheus on 127.0.0.1 with the alerts of
// deploy/prometheus, scraping targets every second.
func startPrometheus(t *testing.T, bin string, targets []string) *promServer {
	t.Helper()
	dir := t.TempDir()
	rules, err := filepath.Abs(filepath.Join("deploy", "prometheus", "alerts.yml"))
	if err != nil {
		t.Fatal(err)
	}
	quoted := make([]string, len(targets))
	for i, target := range targets {
		quoted[i] = fmt.Sprintf("%q", target)
	}
	config := fmt.Sprintf(`global: {scrape_interval: 1s, evaluation_interval: 1s}
rule_files: [%q]
scrape_configs:
  - job_name: stringsvc
    static_configs: [{targets: [%s]}]
`, rules, strings.Join(quoted, ", "))
	configFile := filepath.Join(dir, "prometheus.yml")
	if err := os.WriteFile(configFile, []byte(config), 0o644); err != nil {
		t.Fatal(err)
	}
	addr := testenv.FreeAddr(t)
	p := &promServer{url: "http://" + addr}
	p.proc = testenv.StartProcess(t, "prometheus", bin, nil, "--config.file="+configFile,
		"--storage.tsdb.path="+filepath.Join(dir, "data"), "--web.listen-address="+addr, "--log.level=warn")
	client := &http.Client{Timeout: time.Second}
	defer client.CloseIdleConnections()
	testenv.PollUntil(t, 30*time.Second, "Prometheus ready", func() bool {
		p.proc.FailIfExited(t)
		resp, err := client.Get(p.url + "/-/ready")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	})
	return p
}

// apiGet calls Prometheus's HTTP API and decodes the answer's data into v.
// An answer that is not a success is an error, with Prometheus's message.
func (p *promServer) apiGet(path string, params url.Values, v any) error {
	resp, err := http.Get(p.url + path + "?" + params.Encode())
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	var answer struct {
		Status, ErrorType, Error string
		Data                     json.RawMessage
	}
	if err := json.NewDecoder(resp.Body).Decode(&answer); err != nil {
		return fmt.Errorf("%s: %d, %w", path, resp.StatusCode, err)
	}
	if answer.Status != "success" {
		return fmt.Errorf("%s: %s: %s", path, answer.ErrorType, answer.Error)
	}
	return json.Unmarshal(answer.Data, v)
}

// series runs query now and returns how many series it returned.
func (p *promServer) series(query string) (int, error) {
	var data struct {
		ResultType string          `json:"resultType"`
		Result     json.RawMessage `json:"result"`
	}
	if err := p.apiGet("/api/v1/query", url.Values{"query": {query}}, &data); err != nil {
		return 0, err
	}
	if data.ResultType != "vector" && data.ResultType != "matrix" {
		return 1, nil // a scalar or a string is data
	}
	var result []json.RawMessage
	err := json.Unmarshal(data.Result, &result)
	return len(result), err
}

// promRule is a rule as /api/v1/rules reports it.
type promRule struct {
	Name, Query, Health, LastError, Type string
}

func (p *promServer) rules(tb testing.TB) []promRule {
	tb.Helper()
	var data struct {
		Groups []struct{ Rules []promRule }
	}
	if err := p.apiGet("/api/v1/rules", nil, &data); err != nil {
		tb.Fatal(err)
	}
	var rules []promRule
	for _, g := range data.Groups {
		rules = append(rules, g.Rules...)
	}
	return rules
}

// TestMonitoringQueries runs every query of the dashboard and every alert's
// signal through a real Prometheus that scrapes registered backends, a
// proxy following them through etcd and a proxy whose only instance is
// down: each must parse and return data. It also wants every alert loaded
// and evaluated without error.
func TestMonitoringQueries(t *testing.T) {
	if testing.Short() {
		t.Skip("starts etcd, Prometheus and four instances; skipped with -short")
	}
	bin := testenv.RequireTool(t, "prometheus", prometheusHint)
	t.Parallel()
	etcd := testenv.StartEtcd(t)
	registry := "etcd://" + etcd.Endpoint
	b1 := startStringsvc(t, backendArgs(registry)...)
	b2 := startStringsvc(t, append(backendArgs(registry), "-grpc.listen", "127.0.0.1:0")...)
	proxy := startStringsvc(t, proxyArgs(registry, "-proxy.hedge-after", "20ms")...)
	broken := startStringsvc(t, "-proxy", testenv.FreeAddr(t), "-proxy.attempts", "1")
	testenv.PollUntil(t, 10*time.Second, "the proxy follows both backends", hasSet(t, proxy.addr, addrs(b1, b2)))

	// Successes, business errors, and 5xx from the broken proxy (its
	// breaker opens after the fifth).
	for _, r := range []struct {
		to   *stringsvcRun
		body string
		want int
		n    int
	}{
		{proxy, `{"s":"hello"}`, http.StatusOK, 20},
		{proxy, `{"s":""}`, http.StatusBadRequest, 5},
		{broken, `{"s":"hello"}`, 0, 10},
	} {
		for range r.n {
			if status, body := postTraced(t, "http://"+r.to.addr+"/uppercase", r.body, traceparent{}); r.want != 0 && status != r.want {
				t.Fatalf("POST /uppercase %s = %d %q; want %d", r.body, status, body, r.want)
			}
		}
	}

	prom := startPrometheus(t, bin, []string{b1.addr, b2.addr, proxy.addr, broken.addr})
	testenv.PollUntil(t, 30*time.Second, "Prometheus has scraped every target twice", func() bool {
		n, err := prom.series(`count_over_time(up[1m]) >= 2`)
		return err == nil && n == 4
	})

	queries := dashboardQueries(t, "10s")
	testenv.PollUntil(t, 30*time.Second, "every alert evaluated", func() bool {
		rules := prom.rules(t)
		for _, r := range rules {
			if r.Health == "unknown" {
				return false
			}
		}
		return len(rules) > 0
	})
	for _, r := range prom.rules(t) {
		if r.Type != "alerting" {
			continue
		}
		if r.Health != "ok" {
			t.Errorf("alert %s: health %s, %s; want ok", r.Name, r.Health, r.LastError)
		}
		if _, err := prom.series(r.Query); err != nil {
			t.Errorf("alert %s: %q: %v", r.Name, r.Query, err)
		}
		m := alertSignal.FindStringSubmatch(r.Query)
		if m == nil {
			t.Errorf("alert %s: %q is not <signal> <comparison> <number>", r.Name, r.Query)
			continue
		}
		queries["alert "+r.Name] = m[1]
	}

	// Each query has data once Prometheus has enough samples for its
	// window; the ones still without data at the deadline fail.
	missing := make(map[string]error)
	for name := range queries {
		missing[name] = nil
	}
	deadline := time.Now().Add(30 * time.Second)
	tick := time.NewTicker(500 * time.Millisecond)
	defer tick.Stop()
	for len(missing) > 0 && time.Now().Before(deadline) {
		for name := range missing {
			n, err := prom.series(queries[name])
			switch {
			case err != nil && strings.Contains(err.Error(), "bad_data"):
				t.Errorf("%s: %q does not parse: %v", name, queries[name], err)
				delete(missing, name)
			case err == nil && n > 0:
				delete(missing, name)
			default:
				missing[name] = err
			}
		}
		if len(missing) > 0 {
			<-tick.C
		}
	}
	for name, err := range missing {
		t.Errorf("%s: %q returned no series after 30s (%v)", name, queries[name], err)
	}
	t.Logf("ran %d queries of the dashboard and the alerts", len(queries))
}
