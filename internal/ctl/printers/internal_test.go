package printers

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"
	"text/tabwriter"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/dynamicpb"
	"google.golang.org/protobuf/types/known/structpb"
	k8smeta "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/duration"

	corev1 "github.com/rafter-dev/rafter/gen/rafter/core/v1"
	metav1 "github.com/rafter-dev/rafter/gen/rafter/meta/v1"
)

func TestAge(t *testing.T) {
	for d, want := range map[time.Duration]string{
		-3 * time.Second:                     "<invalid>",
		-1500 * time.Millisecond:             "0s",
		0:                                    "0s",
		5 * time.Second:                      "5s",
		119 * time.Second:                    "119s",
		2 * time.Minute:                      "2m",
		2*time.Minute + 30*time.Second:       "2m30s",
		9*time.Minute + 59*time.Second:       "9m59s",
		10*time.Minute + 30*time.Second:      "10m",
		45 * time.Minute:                     "45m",
		179 * time.Minute:                    "179m",
		3 * time.Hour:                        "3h",
		3*time.Hour + 20*time.Minute:         "3h20m",
		7*time.Hour + 59*time.Minute:         "7h59m",
		8*time.Hour + 30*time.Minute:         "8h",
		47 * time.Hour:                       "47h",
		48 * time.Hour:                       "2d",
		5*24*time.Hour + 4*time.Hour:         "5d4h",
		8 * 24 * time.Hour:                   "8d",
		729 * 24 * time.Hour:                 "729d",
		2 * 365 * 24 * time.Hour:             "2y",
		(2*365 + 30) * 24 * time.Hour:        "2y30d",
		8 * 365 * 24 * time.Hour:             "8y",
		time.Duration(1<<63 - 1):             "292y",
		(9*365+200)*24*time.Hour + time.Hour: "9y",
	} {
		if got := Age(d); got != want {
			t.Errorf("Age(%v) = %q, want %q", d, got, want)
		}
	}
}

// TestAgeIsKubectls compares Age with apimachinery's HumanDuration, which kubectl
// uses, over durations of every magnitude.
func TestAgeIsKubectls(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for range 100000 {
		d := time.Duration(rng.Int64N(int64(10*365*24*time.Hour))) >> rng.IntN(40)
		if rng.IntN(10) == 0 {
			d = -d
		}
		if got, want := Age(d), duration.HumanDuration(d); got != want {
			t.Fatalf("Age(%v) = %q, HumanDuration = %q", d, got, want)
		}
	}
}

// TestTableWriterIsTabwriter checks TableWriter's alignment against kubectl's
// tabwriter settings for tables flushed at once.
func TestTableWriterIsTabwriter(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	words := []string{"", "a", "web-0", "<none>", "10.244.1.5", "ünïcødé", "CrashLoopBackOff", "80:30080/TCP,443:30443/TCP"}
	for i := range 200 {
		cols := 1 + rng.IntN(6)
		var rows [][]string
		for range 1 + rng.IntN(5) {
			row := make([]string, cols)
			for j := range row {
				row[j] = words[rng.IntN(len(words))]
			}
			rows = append(rows, row)
		}
		var got, want bytes.Buffer
		tw := NewTableWriter(&got)
		kw := tabwriter.NewWriter(&want, 0, 8, 3, ' ', 0)
		for _, row := range rows {
			tw.WriteRow(row)
			fmt.Fprintln(kw, strings.Join(row, "\t"))
		}
		if err := tw.Flush(); err != nil {
			t.Fatal(err)
		}
		kw.Flush()
		if got.String() != want.String() {
			t.Fatalf("table %d %q:\n got\n%s\nwant\n%s", i, rows, got.String(), want.String())
		}
	}
}

func TestTableWriterRemembersWidths(t *testing.T) {
	var b bytes.Buffer
	tw := NewTableWriter(&b)
	tw.WriteRow([]string{"NAME", "READY", "STATUS"})
	tw.WriteRow([]string{"web-0", "1/1", "Running"})
	if err := tw.Flush(); err != nil {
		t.Fatal(err)
	}
	tw.WriteRow([]string{"a", "0/1", "Pending"})
	if err := tw.Flush(); err != nil {
		t.Fatal(err)
	}
	tw.WriteRow([]string{"much-longer-name", "0/1", "ContainerCreating"})
	if err := tw.Flush(); err != nil {
		t.Fatal(err)
	}
	tw.WriteRow([]string{"b", "1/1", "Running"})
	if err := tw.Flush(); err != nil {
		t.Fatal(err)
	}
	want := `NAME    READY   STATUS
web-0   1/1     Running
a       0/1     Pending
much-longer-name   0/1     ContainerCreating
b                  1/1     Running
`
	if b.String() != want {
		t.Errorf("got\n%s\nwant\n%s", b.String(), want)
	}
}

func TestTableWriterEscapes(t *testing.T) {
	var b bytes.Buffer
	tw := NewTableWriter(&b)
	tw.WriteRow([]string{"a\tb", "\x1b[31mred", "first\nsecond"})
	tw.WriteRow([]string{"c", "d", "e\r\nf"})
	if err := tw.Flush(); err != nil {
		t.Fatal(err)
	}
	want := "a b   ^[[31mred   first...\nc     d           e...\n"
	if b.String() != want {
		t.Errorf("got %q, want %q", b.String(), want)
	}
}

// TestSelectorsAreKubectls compares the selector strings of the wide columns with
// apimachinery's, which kubectl prints.
func TestSelectorsAreKubectls(t *testing.T) {
	for _, sel := range []*metav1.LabelSelector{
		nil,
		{},
		{MatchLabels: map[string]string{"app": "web"}},
		{MatchLabels: map[string]string{"b": "2", "a": "1", "a.b/c": "3"}},
		{MatchExpressions: []*metav1.LabelSelectorRequirement{
			{Key: "env", Operator: "NotIn", Values: []string{"qa", "dev", "prod"}},
			{Key: "canary", Operator: "DoesNotExist"},
			{Key: "tier", Operator: "Exists"},
			{Key: "zone", Operator: "In", Values: []string{"b"}},
		}},
		{MatchLabels: map[string]string{"z": "1"}, MatchExpressions: []*metav1.LabelSelectorRequirement{{Key: "a", Operator: "In", Values: []string{"x", "y"}}}},
		{MatchExpressions: []*metav1.LabelSelectorRequirement{{Key: "a", Operator: "Near", Values: []string{"x"}}}},
		{MatchExpressions: []*metav1.LabelSelectorRequirement{{Key: "a", Operator: "In"}}},
		{MatchExpressions: []*metav1.LabelSelectorRequirement{{Key: "a", Operator: "Exists", Values: []string{"x"}}}},
	} {
		var ks *k8smeta.LabelSelector
		if sel != nil {
			ks = &k8smeta.LabelSelector{MatchLabels: sel.MatchLabels}
			for _, e := range sel.MatchExpressions {
				ks.MatchExpressions = append(ks.MatchExpressions, k8smeta.LabelSelectorRequirement{
					Key: e.Key, Operator: k8smeta.LabelSelectorOperator(e.Operator), Values: e.Values,
				})
			}
		}
		if got, want := formatLabelSelector(sel), k8smeta.FormatLabelSelector(ks); got != want {
			t.Errorf("formatLabelSelector(%v) = %q, want %q", sel, got, want)
		}
		want := "<invalid>"
		if s, err := k8smeta.LabelSelectorAsSelector(ks); err == nil {
			want = s.String()
		}
		got, err := selectorString(sel)
		if err != nil {
			got = "<invalid>"
		}
		if got != want {
			t.Errorf("selectorString(%v) = %q, want %q", sel, got, want)
		}
	}
}

func TestFormatLabelsIsKubectls(t *testing.T) {
	for _, m := range []map[string]string{nil, {"a": "1"}, {"a": "2", "a.b": "1", "b": ""}, {"app": "web", "tier": "frontend"}} {
		if got, want := formatLabels(m), labels.FormatLabels(m); got != want {
			t.Errorf("formatLabels(%v) = %q, want %q", m, got, want)
		}
	}
}

func TestQuantity(t *testing.T) {
	for _, tc := range []struct {
		v    *structpb.Value
		want string
	}{
		{nil, "0"},
		{structpb.NewStringValue("10Gi"), "10Gi"},
		{structpb.NewStringValue("1000"), "1k"},
		{structpb.NewStringValue("1536Mi"), "1536Mi"},
		{structpb.NewStringValue("0.5Gi"), "512Mi"},
		{structpb.NewNumberValue(1073741824), "1073741824"},
		{structpb.NewNumberValue(0.5), "500m"},
		{structpb.NewStringValue("lots"), "lots"},
		{structpb.NewBoolValue(true), "0"},
	} {
		if got := quantity(tc.v); got != tc.want {
			t.Errorf("quantity(%v) = %q, want %q", tc.v, got, tc.want)
		}
	}
}

// TestRowOfDynamicMessage checks that a message of the kind's type that is not
// the generated Go type (as a generic client might hold) prints the same.
func TestRowOfDynamicMessage(t *testing.T) {
	cm := &corev1.ConfigMap{Metadata: &metav1.ObjectMeta{Name: "c"}, Data: map[string]string{"a": "1"}}
	b, err := proto.Marshal(cm)
	if err != nil {
		t.Fatal(err)
	}
	dyn := dynamicpb.NewMessage(cm.ProtoReflect().Descriptor())
	if err := proto.Unmarshal(b, dyn); err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	got := tables["ConfigMap"].cells(dyn, rowContext{now: now})
	want := tables["ConfigMap"].cells(cm, rowContext{now: now})
	if strings.Join(got, "|") != strings.Join(want, "|") {
		t.Errorf("dynamic message row %q, want %q", got, want)
	}
	if got := tables["ConfigMap"].cells(&corev1.Secret{}, rowContext{now: now}); got[0] != "" || got[1] != "0" {
		t.Errorf("message of another kind: row %q", got)
	}
	if got := tables["ConfigMap"].cells((*corev1.ConfigMap)(nil), rowContext{now: now}); got[0] != "" {
		t.Errorf("nil message: row %q", got)
	}
}
