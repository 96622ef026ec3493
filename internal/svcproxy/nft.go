package svcproxy

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net/netip"
	"os"

	"github.com/google/nftables"
	"github.com/google/nftables/binaryutil"
	"github.com/google/nftables/expr"
	"github.com/google/nftables/userdata"
	"golang.org/x/sys/unix"
)

// DefaultTable is the nftables table (family ip) the proxy owns.
const DefaultTable = "rafter-svc"

// masqMark is the packet mark bit that asks the srcnat chain to masquerade
// (kube-proxy's 0x4000).
const masqMark = 0x4000

// rulesetVersion changes whenever the encoding below changes, so a table
// written by an older version never passes for the current one.
const rulesetVersion = "v1"

// Chain names of the table (per-port chains are "svc-<port name>" and
// "ep-<port name>/<endpoint>").
const (
	chainPrerouting  = "nat-prerouting"
	chainOutput      = "nat-output"
	chainPostrouting = "nat-postrouting"
	chainServices    = "services"
	chainFilterIn    = "filter-input"
	chainFilterFwd   = "filter-forward"
	chainFilterOut   = "filter-output"
	chainNoEndpoints = "no-endpoints"
)

// Applier writes Rulesets into one nftables table of one network namespace.
// Its methods must not be called concurrently (the proxy's loop owns it).
type Applier struct {
	netns string // path of the netns; "" = the caller's
	table *nftables.Table
}

// NewApplier returns an applier for table (DefaultTable if empty) in the
// netns at netnsPath ("" = the calling process's). It touches nothing.
func NewApplier(netnsPath, table string) *Applier {
	if table == "" {
		table = DefaultTable
	}
	return &Applier{netns: netnsPath, table: &nftables.Table{Family: nftables.TableFamilyIPv4, Name: table}}
}

// conn opens a netlink connection in the applier's netns; close the returned
// func after use.
func (a *Applier) conn() (*nftables.Conn, func(), error) {
	if a.netns == "" {
		c, err := nftables.New()
		return c, func() {}, err
	}
	f, err := os.Open(a.netns)
	if err != nil {
		return nil, nil, fmt.Errorf("open netns: %w", err)
	}
	c, err := nftables.New(nftables.WithNetNSFd(int(f.Fd())))
	if err != nil {
		f.Close()
		return nil, nil, err
	}
	return c, func() { _ = c.CloseLasting(); f.Close() }, nil
}

// fingerprint names rs and the encoding; it is the comment of the
// nat-prerouting rule, so Apply can tell that the kernel already holds rs.
func fingerprint(rs Ruleset) string {
	sum := sha256.Sum256([]byte(rulesetVersion + "\n" + rs.String()))
	return "rafter-svc " + rulesetVersion + " " + hex.EncodeToString(sum[:16])
}

// Apply makes the table hold exactly rs. When the table already holds it
// (same fingerprint), it writes nothing and returns changed=false. Otherwise
// it deletes and rebuilds the whole table in one nftables transaction, which
// the kernel applies atomically: packets see the old rules or the new ones,
// never a mix. Established connections keep their NAT (conntrack).
func (a *Applier) Apply(rs Ruleset) (changed bool, err error) {
	c, done, err := a.conn()
	if err != nil {
		return false, fmt.Errorf("apply services: %w", err)
	}
	defer done()
	fp := fingerprint(rs)
	if rules, err := c.GetRules(a.table, &nftables.Chain{Name: chainPrerouting, Table: a.table}); err == nil && len(rules) == 1 {
		if got, _ := userdata.GetString(rules[0].UserData, userdata.TypeComment); got == fp {
			return false, nil
		}
	}
	// "add; delete; add" replaces the table whether or not it exists.
	c.AddTable(a.table)
	c.DelTable(a.table)
	c.AddTable(a.table)
	if err := a.build(c, rs, fp); err != nil {
		return false, fmt.Errorf("apply services: %w", err)
	}
	if err := c.Flush(); err != nil {
		return false, fmt.Errorf("apply services to table ip %s: %w", a.table.Name, err)
	}
	return true, nil
}

// Remove deletes the table. It is idempotent.
func (a *Applier) Remove() error {
	c, done, err := a.conn()
	if err != nil {
		return fmt.Errorf("remove services table: %w", err)
	}
	defer done()
	c.AddTable(a.table)
	c.DelTable(a.table)
	if err := c.Flush(); err != nil {
		return fmt.Errorf("remove table ip %s: %w", a.table.Name, err)
	}
	return nil
}

// build queues, on c, the table's content for rs:
//
//	chain nat-prerouting  { type nat hook prerouting priority dstnat; jump services comment "<fingerprint>" }
//	chain nat-output      { type nat hook output priority dstnat; jump services }
//	chain nat-postrouting { type nat hook postrouting priority srcnat; meta mark & 0x4000 != 0 masquerade }
//	chain filter-input/-forward/-output { type filter hook ... priority filter; jump no-endpoints }
//	chain services {
//	  ip daddr CIP meta l4proto P th dport PORT goto svc-NAME             (per port with endpoints)
//	  fib daddr type local ip daddr != 127.0.0.0/8 meta l4proto P th dport NODEPORT meta mark set mark | 0x4000 goto svc-NAME
//	}
//	chain svc-NAME { numgen random mod N vmap { 0 : goto ep-NAME/EP0, ... } }  (goto ep-... if N = 1)
//	chain ep-NAME/EP { ip saddr EPIP meta mark set mark | 0x4000; dnat to EPIP:EPPORT }
//	chain no-endpoints {
//	  ip daddr CIP meta l4proto tcp th dport PORT reject with tcp reset   (icmp port-unreachable for udp/sctp)
//	  fib daddr type local ... th dport NODEPORT reject ...
//	}
func (a *Applier) build(c *nftables.Conn, rs Ruleset, fp string) error {
	t := a.table
	chain := func(name string, typ nftables.ChainType, hook *nftables.ChainHook, prio *nftables.ChainPriority) *nftables.Chain {
		ch := &nftables.Chain{Name: name, Table: t}
		if hook != nil {
			ch.Type, ch.Hooknum, ch.Priority = typ, hook, prio
		}
		return c.AddChain(ch)
	}
	rule := func(ch *nftables.Chain, comment string, exprs ...expr.Any) {
		r := &nftables.Rule{Table: t, Chain: ch, Exprs: exprs}
		if comment != "" {
			r.UserData = userdata.AppendString(nil, userdata.TypeComment, comment)
		}
		c.AddRule(r)
	}
	services := chain(chainServices, "", nil, nil)
	noEndpoints := chain(chainNoEndpoints, "", nil, nil)
	// Regular chains first, so the base chains jump to chains that exist.
	for _, p := range rs.Ports {
		svcName := "svc-" + p.Name
		if len(svcName) > 250 {
			return fmt.Errorf("service port %s: name too long for a chain", p.Name)
		}
		if len(p.Endpoints) == 0 {
			rule(noEndpoints, "", append(matchClusterIP(p), reject(p.Protocol)...)...)
			if p.NodePort != 0 {
				rule(noEndpoints, "", append(matchNodePort(p), reject(p.Protocol)...)...)
			}
			continue
		}
		svc := chain(svcName, "", nil, nil)
		var epChains []string
		for _, ep := range p.Endpoints {
			name := fmt.Sprintf("ep-%s__%s/%d", p.Name, ep.IP, ep.Port)
			epChains = append(epChains, name)
			ch := chain(name, "", nil, nil)
			rule(ch, "", append(matchAddr(12, ep.IP, expr.CmpOpEq), setMark()...)...)
			rule(ch, "", dnat(ep)...)
		}
		if len(epChains) == 1 {
			rule(svc, "", &expr.Verdict{Kind: expr.VerdictGoto, Chain: epChains[0]})
		} else {
			set := &nftables.Set{Table: t, Anonymous: true, Constant: true, IsMap: true,
				KeyType: nftables.TypeInteger, DataType: nftables.TypeVerdict, KeyByteOrder: binaryutil.NativeEndian}
			var elems []nftables.SetElement
			for i, name := range epChains {
				elems = append(elems, nftables.SetElement{Key: binaryutil.NativeEndian.PutUint32(uint32(i)),
					VerdictData: &expr.Verdict{Kind: expr.VerdictGoto, Chain: name}})
			}
			if err := c.AddSet(set, elems); err != nil {
				return fmt.Errorf("service port %s: %w", p.Name, err)
			}
			rule(svc, "",
				&expr.Numgen{Register: 1, Modulus: uint32(len(epChains)), Type: unix.NFT_NG_RANDOM},
				&expr.Lookup{SourceRegister: 1, SetName: set.Name, SetID: set.ID, IsDestRegSet: true, DestRegister: 0})
		}
		rule(services, "", append(matchClusterIP(p), &expr.Verdict{Kind: expr.VerdictGoto, Chain: svcName})...)
		if p.NodePort != 0 {
			e := append(matchNodePort(p), setMark()...)
			rule(services, "", append(e, &expr.Verdict{Kind: expr.VerdictGoto, Chain: svcName})...)
		}
	}
	jump := func(to string) expr.Any { return &expr.Verdict{Kind: expr.VerdictJump, Chain: to} }
	rule(chain(chainPrerouting, nftables.ChainTypeNAT, nftables.ChainHookPrerouting, nftables.ChainPriorityNATDest), fp, jump(chainServices))
	rule(chain(chainOutput, nftables.ChainTypeNAT, nftables.ChainHookOutput, nftables.ChainPriorityNATDest), "", jump(chainServices))
	rule(chain(chainPostrouting, nftables.ChainTypeNAT, nftables.ChainHookPostrouting, nftables.ChainPriorityNATSource), "",
		&expr.Meta{Key: expr.MetaKeyMARK, Register: 1},
		&expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: 4,
			Mask: binaryutil.NativeEndian.PutUint32(masqMark), Xor: binaryutil.NativeEndian.PutUint32(0)},
		&expr.Cmp{Op: expr.CmpOpNeq, Register: 1, Data: binaryutil.NativeEndian.PutUint32(0)},
		&expr.Masq{})
	for _, f := range []struct {
		name string
		hook *nftables.ChainHook
	}{{chainFilterIn, nftables.ChainHookInput}, {chainFilterFwd, nftables.ChainHookForward}, {chainFilterOut, nftables.ChainHookOutput}} {
		rule(chain(f.name, nftables.ChainTypeFilter, f.hook, nftables.ChainPriorityFilter), "", jump(chainNoEndpoints))
	}
	return nil
}

// matchAddr is `ip saddr|daddr op addr` (offset 12 = saddr, 16 = daddr).
func matchAddr(offset uint32, ip netip.Addr, op expr.CmpOp) []expr.Any {
	return []expr.Any{
		&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: offset, Len: 4},
		&expr.Cmp{Op: op, Register: 1, Data: ip.AsSlice()},
	}
}

// matchPort is `meta l4proto P th dport port`.
func matchPort(proto Protocol, port uint16) []expr.Any {
	return []expr.Any{
		&expr.Meta{Key: expr.MetaKeyL4PROTO, Register: 1},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{proto.l4proto()}},
		&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseTransportHeader, Offset: 2, Len: 2},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: binaryutil.BigEndian.PutUint16(port)},
	}
}

func matchClusterIP(p ServicePort) []expr.Any {
	return append(matchAddr(16, p.ClusterIP, expr.CmpOpEq), matchPort(p.Protocol, p.Port)...)
}

// matchNodePort is `fib daddr type local ip daddr != 127.0.0.0/8 meta
// l4proto P th dport NODEPORT`. Loopback is left out: DNAT of 127.0.0.1 to a
// pod would need route_localnet (kube-proxy's nftables mode leaves it out
// too).
func matchNodePort(p ServicePort) []expr.Any {
	e := []expr.Any{
		&expr.Fib{Register: 1, FlagDADDR: true, ResultADDRTYPE: true},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: binaryutil.NativeEndian.PutUint32(unix.RTN_LOCAL)},
		&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: 16, Len: 1},
		&expr.Cmp{Op: expr.CmpOpNeq, Register: 1, Data: []byte{127}},
	}
	return append(e, matchPort(p.Protocol, p.NodePort)...)
}

// setMark is `meta mark set mark | 0x4000`.
func setMark() []expr.Any {
	return []expr.Any{
		&expr.Meta{Key: expr.MetaKeyMARK, Register: 1},
		&expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: 4,
			Mask: binaryutil.NativeEndian.PutUint32(^uint32(masqMark)), Xor: binaryutil.NativeEndian.PutUint32(masqMark)},
		&expr.Meta{Key: expr.MetaKeyMARK, SourceRegister: true, Register: 1},
	}
}

// dnat is `dnat to EPIP:EPPORT`.
func dnat(ep Endpoint) []expr.Any {
	return []expr.Any{
		&expr.Immediate{Register: 1, Data: ep.IP.AsSlice()},
		&expr.Immediate{Register: 2, Data: binaryutil.BigEndian.PutUint16(ep.Port)},
		&expr.NAT{Type: expr.NATTypeDestNAT, Family: unix.NFPROTO_IPV4, RegAddrMin: 1, RegProtoMin: 2, Specified: true},
	}
}

// reject is `reject with tcp reset` for TCP and `reject with icmp type
// port-unreachable` otherwise: the client fails at once.
func reject(p Protocol) []expr.Any {
	if p == TCP {
		return []expr.Any{&expr.Reject{Type: unix.NFT_REJECT_TCP_RST}}
	}
	return []expr.Any{&expr.Reject{Type: unix.NFT_REJECT_ICMP_UNREACH, Code: 3}} // ICMP port unreachable
}
