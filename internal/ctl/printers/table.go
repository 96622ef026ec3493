package printers

import (
	"io"
	"strings"
	"time"
	"unicode/utf8"

	"google.golang.org/protobuf/proto"

	"github.com/rafter-dev/rafter/gen/rafter/kinds"
	metav1 "github.com/rafter-dev/rafter/gen/rafter/meta/v1"
)

// column is one column of a kind's table, as kubectl defines it: wide columns
// (kubectl's priority 1) show only with -o wide.
type column struct {
	name string
	wide bool
}

// rowContext is what a kind's cells may depend on besides the object.
type rowContext struct {
	now  time.Time
	wide bool
}

// age is the AGE cell of an object: the time since its creation.
func (c rowContext) age(md *metav1.ObjectMeta) string {
	return c.since(md.GetCreationTimestamp())
}

// kindTable is how one kind prints as a table: its columns, and the cells of an
// object's row, one per column whether wide or not.
type kindTable struct {
	columns []column
	cells   func(obj proto.Message, c rowContext) []string
}

// tables holds the kinds with columns of their own, by Kind. They are added by
// init functions in the files for each kind.
var tables = map[string]kindTable{}

// defaultTable is kubectl's table for a kind it knows nothing about.
var defaultTable = kindTable{
	columns: []column{{name: "NAME"}, {name: "AGE"}},
	cells: func(obj proto.Message, c rowContext) []string {
		md := metadata(obj)
		return []string{md.GetName(), c.age(md)}
	},
}

// register adds the table of kind, whose objects are of Go type T.
func register[T proto.Message](kind string, columns []column, cells func(T, rowContext) []string) {
	tables[kind] = kindTable{
		columns: columns,
		cells: func(obj proto.Message, c rowContext) []string {
			return cells(as[T](obj), c)
		},
	}
}

// as returns obj as a non-nil T. A message of another Go type with the same
// descriptor (a dynamicpb message, say) is copied into a new T through its wire
// form; nil or a message of another type becomes an empty T.
func as[T proto.Message](obj proto.Message) T {
	if t, ok := obj.(T); ok && t.ProtoReflect().IsValid() {
		return t
	}
	var zero T
	t := zero.ProtoReflect().New().Interface().(T)
	if obj != nil && obj.ProtoReflect().IsValid() && obj.ProtoReflect().Descriptor().FullName() == t.ProtoReflect().Descriptor().FullName() {
		if b, err := proto.Marshal(obj); err == nil {
			_ = proto.Unmarshal(b, t) // on an error the row shows what was decoded
		}
	}
	return t
}

// tableOf is k's table, or kubectl's NAME AGE table for a kind without one.
func tableOf(k kinds.Kind) kindTable {
	if t, ok := tables[k.Kind]; ok {
		return t
	}
	return defaultTable
}

// withNamespace reports whether k's table starts with a NAMESPACE column.
func withNamespace(k kinds.Kind, opts Options) bool {
	return opts.AllNamespaces && k.Namespaced
}

// Header returns the column names of k's table: kubectl's, with the wide ones for
// Output "wide", and NAMESPACE first when opts.AllNamespaces and k is namespaced.
func Header(k kinds.Kind, opts Options) []string {
	var h []string
	if withNamespace(k, opts) {
		h = append(h, "NAMESPACE")
	}
	for _, col := range tableOf(k).columns {
		if !col.wide || opts.wide() {
			h = append(h, col.name)
		}
	}
	return h
}

// Row returns obj's cells under the columns Header(k, opts) returns; with
// opts.WithKind the NAME cell is ResourceName's. AGE and the other times are
// counted to opts.Now. Cells are as kubectl computes them (empty where kubectl
// leaves them empty); a TableWriter makes them safe for a terminal. obj should be
// of k's message type; a message of another type prints as an empty object.
func Row(k kinds.Kind, obj proto.Message, opts Options) []string {
	t := tableOf(k)
	all := t.cells(obj, rowContext{now: opts.now(), wide: opts.wide()})
	var row []string
	if withNamespace(k, opts) {
		row = append(row, metadata(obj).GetNamespace())
	}
	for i, col := range t.columns {
		if col.wide && !opts.wide() {
			continue
		}
		cell := ""
		if i < len(all) {
			cell = all[i]
		}
		if col.name == "NAME" && opts.WithKind {
			cell = kindName(k) + "/" + cell
		}
		row = append(row, cell)
	}
	return row
}

// A TableWriter writes rows of cells aligned in columns as kubectl's table printer
// does: each column as wide as its widest cell plus three spaces, the last column
// not padded. Widths are remembered across calls to Flush, as kubectl remembers
// them in watch mode, so rows flushed one at a time line up with the rows before
// them unless a cell is wider than any before it in its column.
//
// Cells are made safe as kubectl makes them: a cell is cut at its first line break
// (and ends in "..."), an escape character shows as "^[" and a tab as a space.
// A TableWriter is not safe for concurrent use.
type TableWriter struct {
	w      io.Writer
	widths []int // widest cell so far in each column, in runes
	rows   [][]string
}

// NewTableWriter returns a TableWriter writing to w.
func NewTableWriter(w io.Writer) *TableWriter {
	return &TableWriter{w: w}
}

// WriteRow adds a row, to be written by the next Flush.
func (t *TableWriter) WriteRow(cells []string) {
	row := make([]string, len(cells))
	for i, c := range cells {
		row[i] = escapeCell(c)
		if n := utf8.RuneCountInString(row[i]); i < len(cells)-1 {
			if i >= len(t.widths) {
				t.widths = append(t.widths, n)
			} else if n > t.widths[i] {
				t.widths[i] = n
			}
		}
	}
	t.rows = append(t.rows, row)
}

// Flush writes the rows added since the last Flush and returns the writer's error.
func (t *TableWriter) Flush() error {
	var b strings.Builder
	for _, row := range t.rows {
		for i, c := range row {
			b.WriteString(c)
			if i < len(row)-1 {
				b.WriteString(strings.Repeat(" ", t.widths[i]-utf8.RuneCountInString(c)+3))
			}
		}
		b.WriteByte('\n')
	}
	t.rows = t.rows[:0]
	_, err := io.WriteString(t.w, b.String())
	return err
}

var cellEscaper = strings.NewReplacer("\x1b", "^[", "\t", " ")

func escapeCell(s string) string {
	if i := strings.IndexAny(s, "\f\n\r"); i >= 0 {
		s = s[:i] + "..."
	}
	return cellEscaper.Replace(s)
}
