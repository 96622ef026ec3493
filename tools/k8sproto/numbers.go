package main

import (
	"bufio"
	"fmt"
	"regexp"
	"sort"
	"strconv"
	"strings"
)

// previousMessage is what an earlier version of a generated file fixed for one
// message: the number of every field and the numbers retired from it.
type previousMessage struct {
	Numbers  map[string]int // field JSON name -> number
	Reserved map[int]string // retired number -> the name it had ("" if unknown)
}

var (
	messageStart = regexp.MustCompile(`^message\s+(\w+)\s*\{\s*$`)
	fieldLine    = regexp.MustCompile(`^(?:(?:optional|repeated)\s+)?(?:map\s*<[^>]*>|[\w.]+)\s+(\w+)\s*=\s*(\d+)\s*(?:\[([^\]]*)\])?\s*;\s*(?://.*)?$`)
	jsonNameOpt  = regexp.MustCompile(`json_name\s*=\s*"([^"]*)"`)
	reservedLine = regexp.MustCompile(`^reserved\s+(\d+)\s*;\s*(?://\s*(\w+))?\s*$`)
)

// parsePrevious reads the messages of a .proto file this generator wrote. It
// understands exactly the subset the generator emits (top-level messages with
// one field or reserved number per line) and fails on anything else inside a
// message, so a hand edit cannot silently lose a number.
func parsePrevious(src string) (map[string]*previousMessage, error) {
	out := map[string]*previousMessage{}
	var cur *previousMessage
	var curName string
	sc := bufio.NewScanner(strings.NewReader(src))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if cur == nil {
			if m := messageStart.FindStringSubmatch(line); m != nil {
				curName = m[1]
				if _, dup := out[curName]; dup {
					return nil, fmt.Errorf("line %d: message %s declared twice", n, curName)
				}
				cur = &previousMessage{Numbers: map[string]int{}, Reserved: map[int]string{}}
				out[curName] = cur
			}
			continue
		}
		switch {
		case line == "" || strings.HasPrefix(line, "//"):
		case line == "}":
			cur = nil
		case fieldLine.MatchString(line):
			m := fieldLine.FindStringSubmatch(line)
			num, err := strconv.Atoi(m[2])
			if err != nil {
				return nil, fmt.Errorf("line %d: %w", n, err)
			}
			if err := cur.claim(num); err != nil {
				return nil, fmt.Errorf("line %d: message %s: %w", n, curName, err)
			}
			name := m[1]
			if jn := jsonNameOpt.FindStringSubmatch(m[3]); jn != nil {
				name = jn[1]
			}
			if _, dup := cur.Numbers[name]; dup {
				return nil, fmt.Errorf("line %d: message %s: field %s declared twice", n, curName, name)
			}
			cur.Numbers[name] = num
		case reservedLine.MatchString(line):
			m := reservedLine.FindStringSubmatch(line)
			num, err := strconv.Atoi(m[1])
			if err != nil {
				return nil, fmt.Errorf("line %d: %w", n, err)
			}
			if err := cur.claim(num); err != nil {
				return nil, fmt.Errorf("line %d: message %s: %w", n, curName, err)
			}
			cur.Reserved[num] = m[2]
		default:
			return nil, fmt.Errorf("line %d: message %s: cannot parse %q", n, curName, line)
		}
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("scan: %w", err)
	}
	if cur != nil {
		return nil, fmt.Errorf("message %s is not closed", curName)
	}
	return out, nil
}

// claim fails if num is already used by a field or a reservation.
func (p *previousMessage) claim(num int) error {
	if num <= 0 {
		return fmt.Errorf("invalid field number %d", num)
	}
	for name, n := range p.Numbers {
		if n == num {
			return fmt.Errorf("number %d already used by %s", num, name)
		}
	}
	if _, ok := p.Reserved[num]; ok {
		return fmt.Errorf("number %d already reserved", num)
	}
	return nil
}

// reservation is a field number retired from a message, with the name it had.
type reservation struct {
	Number int
	Name   string
}

// assignNumbers gives every field of m a number: its previous number if it had
// one, else the next number never used in this message. It returns the numbers
// that must stay reserved: earlier reservations plus fields that disappeared.
func assignNumbers(m *message, prev *previousMessage) []reservation {
	next := 1
	if prev == nil {
		prev = &previousMessage{}
	}
	for _, n := range prev.Numbers {
		next = max(next, n+1)
	}
	for n := range prev.Reserved {
		next = max(next, n+1)
	}
	present := map[string]bool{}
	for _, f := range m.Fields {
		present[f.Name] = true
		if n, ok := prev.Numbers[f.Name]; ok {
			f.Number = n
			continue
		}
		if next >= 19000 && next <= 19999 { // reserved for the protobuf implementation
			next = 20000
		}
		f.Number = next
		next++
	}
	var res []reservation
	for n, name := range prev.Reserved {
		res = append(res, reservation{Number: n, Name: name})
	}
	for name, n := range prev.Numbers {
		if !present[name] {
			res = append(res, reservation{Number: n, Name: name})
		}
	}
	sort.Slice(res, func(i, j int) bool { return res[i].Number < res[j].Number })
	return res
}
