package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"runtime/debug"
	"sort"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"

	clusterv1 "github.com/rafter-dev/rafter/gen/rafter/cluster/v1"
	"github.com/rafter-dev/rafter/gen/rafter/kinds"
)

func newAPIResources(e *env) *cobra.Command {
	return &cobra.Command{
		Use:   "api-resources",
		Short: "List the kinds the API serves",
		Args:  cobra.NoArgs,
		RunE: func(*cobra.Command, []string) error {
			all := append([]kinds.Kind(nil), kinds.All...)
			// As kubectl: the core group first, then by group, then by name.
			sort.Slice(all, func(i, j int) bool {
				if all[i].Group != all[j].Group {
					return all[i].Group < all[j].Group
				}
				return all[i].Resource < all[j].Resource
			})
			tw := tabwriter.NewWriter(e.Out, 0, 8, 3, ' ', 0)
			fmt.Fprintln(tw, "NAME\tSHORTNAMES\tAPIVERSION\tNAMESPACED\tKIND")
			for _, k := range all {
				fmt.Fprintf(tw, "%s\t%s\t%s\t%v\t%s\n", k.Resource, strings.Join(k.ShortNames, ","), k.APIVersion(), k.Namespaced, k.Kind)
			}
			return tw.Flush()
		},
	}
}

func newVersion(e *env) *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print ctl's version and the cluster's leader",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			version := "(devel)"
			if bi, ok := debug.ReadBuildInfo(); ok {
				for _, s := range bi.Settings {
					if s.Key == "vcs.revision" {
						version = s.Value
					}
				}
			}
			fmt.Fprintf(e.Out, "Client Version: %s\n", version)
			c, err := e.client()
			if err != nil {
				return err
			}
			ctx, cancel := e.ctx(cmd)
			defer cancel()
			resp, err := clusterv1.NewClusterClient(c.Conn).Members(ctx, &clusterv1.MembersRequest{})
			if err != nil {
				return err
			}
			for _, m := range resp.GetMembers() {
				if m.GetState() == "Leader" {
					fmt.Fprintf(e.Out, "Server: %d peers, leader %s (term %d, applied index %d)\n", len(resp.GetMembers()), m.GetId(), m.GetTerm(), m.GetAppliedIndex())
				}
			}
			return nil
		},
	}
}

func newCluster(e *env) *cobra.Command {
	cmd := &cobra.Command{Use: "cluster", Short: "Control-plane membership and leadership"}
	// call runs fn with a Cluster client under the request timeout.
	call := func(cmd *cobra.Command, fn func(context.Context, clusterv1.ClusterClient) error) error {
		c, err := e.client()
		if err != nil {
			return err
		}
		ctx, cancel := e.ctx(cmd)
		defer cancel()
		return fn(ctx, clusterv1.NewClusterClient(c.Conn))
	}
	printMembers := func(ms []*clusterv1.Member) error {
		tw := tabwriter.NewWriter(e.Out, 0, 8, 3, ' ', 0)
		fmt.Fprintln(tw, "ID\tSTATE\tSUFFRAGE\tTERM\tLAST INDEX\tAPPLIED INDEX\tLEADER\tRAFT\tGRPC\tHTTP")
		for _, m := range ms {
			fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%d\t%d\t%s\t%s\t%s\t%s\n", m.GetId(), m.GetState(), m.GetSuffrage(), m.GetTerm(),
				m.GetLastIndex(), m.GetAppliedIndex(), orNone(m.GetLeader()), m.GetRaftAddress(), orNone(m.GetGrpcAddress()), orNone(m.GetHttpAddress()))
		}
		return tw.Flush()
	}
	cmd.AddCommand(&cobra.Command{
		Use: "members", Short: "List the peers with their Raft state", Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return call(cmd, func(ctx context.Context, cc clusterv1.ClusterClient) error {
				resp, err := cc.Members(ctx, &clusterv1.MembersRequest{})
				if err != nil {
					return err
				}
				return printMembers(resp.GetMembers())
			})
		},
	})
	var raftAddr, grpcAddr, httpAddr string
	add := &cobra.Command{
		Use: "add-peer ID --raft-addr=HOST:PORT [--grpc-addr=...] [--http-addr=...]", Short: "Add a peer as a voter", Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if raftAddr == "" {
				return errors.New("--raft-addr is required")
			}
			return call(cmd, func(ctx context.Context, cc clusterv1.ClusterClient) error {
				resp, err := cc.AddVoter(ctx, &clusterv1.AddVoterRequest{Id: args[0], RaftAddress: raftAddr, GrpcAddress: grpcAddr, HttpAddress: httpAddr})
				if err != nil {
					return err
				}
				return printMembers(resp.GetMembers())
			})
		},
	}
	add.Flags().StringVar(&raftAddr, "raft-addr", "", "the new peer's Raft address")
	add.Flags().StringVar(&grpcAddr, "grpc-addr", "", "the new peer's gRPC address")
	add.Flags().StringVar(&httpAddr, "http-addr", "", "the new peer's HTTP address")
	cmd.AddCommand(add)
	cmd.AddCommand(&cobra.Command{
		Use: "remove-peer ID", Short: "Remove a peer from the cluster", Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return call(cmd, func(ctx context.Context, cc clusterv1.ClusterClient) error {
				resp, err := cc.RemovePeer(ctx, &clusterv1.RemovePeerRequest{Id: args[0]})
				if err != nil {
					return err
				}
				fmt.Fprintf(e.Out, "peer %s removed\n", args[0])
				return printMembers(resp.GetMembers())
			})
		},
	})
	cmd.AddCommand(&cobra.Command{
		Use: "transfer-leader [ID]", Short: "Hand leadership to a peer (any up-to-date voter without ID)", Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return call(cmd, func(ctx context.Context, cc clusterv1.ClusterClient) error {
				req := &clusterv1.TransferLeadershipRequest{}
				if len(args) == 1 {
					req.Id = args[0]
				}
				resp, err := cc.TransferLeadership(ctx, req)
				if err != nil {
					return err
				}
				fmt.Fprintf(e.Out, "leader is now %s\n", resp.GetLeader())
				return nil
			})
		},
	})
	return cmd
}

func orNone(s string) string {
	if s == "" {
		return "<none>"
	}
	return s
}

func newSnapshot(e *env) *cobra.Command {
	cmd := &cobra.Command{Use: "snapshot", Short: "Consistent backups of the whole cluster state"}
	cmd.AddCommand(&cobra.Command{
		Use: "save FILE", Short: "Download a consistent backup (restore with controlplane --restore FILE)", Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := e.client()
			if err != nil {
				return err
			}
			stream, err := clusterv1.NewClusterClient(c.Conn).SnapshotSave(cmd.Context(), &clusterv1.SnapshotSaveRequest{})
			if err != nil {
				return err
			}
			tmp := args[0] + ".part"
			f, err := os.Create(tmp)
			if err != nil {
				return err
			}
			defer os.Remove(tmp)
			var n int
			for {
				chunk, err := stream.Recv()
				if errors.Is(err, io.EOF) {
					break
				}
				if err != nil {
					f.Close()
					return err
				}
				w, err := f.Write(chunk.GetData())
				n += w
				if err != nil {
					f.Close()
					return err
				}
			}
			if err := f.Sync(); err != nil {
				f.Close()
				return err
			}
			if err := f.Close(); err != nil {
				return err
			}
			if err := os.Rename(tmp, args[0]); err != nil {
				return err
			}
			fmt.Fprintf(e.Out, "Snapshot saved to %s (%d bytes)\n", args[0], n)
			return nil
		},
	})
	return cmd
}
