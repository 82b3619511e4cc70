package main

import (
	"archive/tar"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/spf13/cobra"

	"github.com/berth-dev/berth/internal/model"
)

func newImage(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "image",
		Short: "Manage the node image store that driver oci runs from",
		Long: `berth keeps its own image store for driver oci: layers pulled from any
OCI / Docker v2 registry, verified by digest, unpacked once and shared
through overlayfs. Apps pull what they need on start; these commands
manage the store by hand.`,
	}
	cmd.AddCommand(newImageLs(g), newImagePull(g), newImageRm(g), newImageImport(g), newImageGC(g))
	return cmd
}

func newImageLs(g *globals) *cobra.Command {
	var out string
	cmd := &cobra.Command{
		Use:     "ls",
		Aliases: []string{"list"},
		Short:   "List images in the store",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := g.client()
			if err != nil {
				return err
			}
			list, err := c.Images(cmd.Context())
			if err != nil {
				return err
			}
			if ok, err := printStructured(os.Stdout, out, list); ok {
				return err
			}
			t := newTable("NAME", "DIGEST", "PLATFORM", "SIZE", "LAYERS", "IN USE", "LAST USED")
			for _, im := range list {
				last := "-"
				if !im.LastUsed.IsZero() {
					last = age(im.LastUsed) + " ago"
				}
				t.row(imageName(im), shortDigest(im.Digest), im.Platform, model.ByteSize(im.Size).Human(), im.Layers, im.InUse, last)
			}
			t.flush()
			return nil
		},
	}
	outputFlag(cmd, &out, "json, yaml")
	return cmd
}

func newImagePull(g *globals) *cobra.Command {
	var req model.PullRequest
	var passwordStdin bool
	var out string
	cmd := &cobra.Command{
		Use:   "pull REF",
		Short: "Pull an image from a registry into the store, showing progress",
		Example: `  berth image pull 127.0.0.1:5000/busybox:1
  echo "$PASS" | berth image pull registry.example.com/team/app:2 --username ci --password-stdin`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			req.Ref = args[0]
			if passwordStdin {
				b, err := io.ReadAll(io.LimitReader(os.Stdin, 64<<10))
				if err != nil {
					return err
				}
				req.Password = strings.TrimRight(string(b), "\r\n")
			}
			c, err := g.client()
			if err != nil {
				return err
			}
			bar := newPullProgress(os.Stderr)
			img, err := c.PullImage(cmd.Context(), req, bar.update)
			bar.finish()
			if err != nil {
				return fmt.Errorf("pull %s: %w", req.Ref, err)
			}
			if ok, err := printStructured(os.Stdout, out, img); ok {
				return err
			}
			fmt.Printf("pulled %s (%s, %d layers, %s)\n", req.Ref, shortDigest(img.Digest), img.Layers, model.ByteSize(img.Size).Human())
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&req.Username, "username", "", "registry user name (default: the node's docker config.json, else anonymous)")
	f.BoolVar(&passwordStdin, "password-stdin", false, "read the registry password from standard input")
	f.StringVar(&req.Platform, "platform", "", "os/arch[/variant] to pick from a multi-arch image (default: the node's)")
	outputFlag(cmd, &out, "json, yaml")
	return cmd
}

func newImageRm(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:     "rm REF...",
		Aliases: []string{"remove"},
		Short:   "Remove images from the store (refused while an instance uses one)",
		Args:    cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := g.client()
			if err != nil {
				return err
			}
			for _, ref := range args {
				if err := c.RemoveImage(cmd.Context(), ref); err != nil {
					return fmt.Errorf("rm %s: %w", ref, err)
				}
				fmt.Println("removed", ref)
			}
			return nil
		},
	}
}

func newImageImport(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "import FILE|DIR|-",
		Short: "Import a `docker save` tarball or an OCI layout (directory or tar), for hosts without registry access",
		Example: `  docker save myapp:1 | berth image import -
  berth image import ./myapp-oci-layout/`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := g.client()
			if err != nil {
				return err
			}
			archive, err := openArchive(args[0])
			if err != nil {
				return err
			}
			defer archive.Close()
			imgs, err := c.ImportImage(cmd.Context(), archive)
			if err != nil {
				return fmt.Errorf("import %s: %w", args[0], err)
			}
			for _, im := range imgs {
				fmt.Printf("imported %s (%s)\n", imageName(im), shortDigest(im.Digest))
			}
			return nil
		},
	}
}

func newImageGC(g *globals) *cobra.Command {
	var max string
	cmd := &cobra.Command{
		Use:   "gc",
		Short: "Delete unreferenced layers, then least recently used images until the store fits --max-size",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			var limit model.ByteSize
			if max != "" {
				var err error
				if limit, err = model.ParseByteSize(max); err != nil {
					return fmt.Errorf("--max-size: %w", err)
				}
			}
			c, err := g.client()
			if err != nil {
				return err
			}
			res, err := c.GCImages(cmd.Context(), int64(limit))
			if err != nil {
				return err
			}
			for _, r := range res.Removed {
				fmt.Println("removed", r)
			}
			fmt.Printf("freed %s\n", model.ByteSize(res.FreedBytes).Human())
			return nil
		},
	}
	cmd.Flags().StringVar(&max, "max-size", "", "evict unused images until the store is at most this size (e.g. 2Gi)")
	return cmd
}

// openArchive opens FILE, standard input for "-", or streams DIR (an OCI
// layout) as a tar.
func openArchive(path string) (io.ReadCloser, error) {
	if path == "-" {
		return io.NopCloser(os.Stdin), nil
	}
	fi, err := os.Stat(path)
	if err != nil {
		return nil, err
	}
	if !fi.IsDir() {
		return os.Open(path)
	}
	if _, err := os.Stat(filepath.Join(path, "oci-layout")); err != nil {
		return nil, fmt.Errorf("%s is a directory but not an OCI layout (no oci-layout file)", path)
	}
	pr, pw := io.Pipe()
	go func() { pw.CloseWithError(tarDir(pw, path)) }()
	return pr, nil
}

// tarDir writes the regular files and directories below root as a tar.
func tarDir(w io.Writer, root string) error {
	tw := tar.NewWriter(w)
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, p)
		if rel == "." || !(d.IsDir() || d.Type().IsRegular()) {
			return nil
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		hdr, err := tar.FileInfoHeader(fi, "")
		if err != nil {
			return err
		}
		hdr.Name = filepath.ToSlash(rel)
		if err := tw.WriteHeader(hdr); err != nil || d.IsDir() {
			return err
		}
		f, err := os.Open(p)
		if err != nil {
			return err
		}
		defer f.Close()
		_, err = io.Copy(tw, f)
		return err
	})
	if err != nil {
		return err
	}
	return tw.Close()
}

// shortDigest is "sha256:" plus 12 hex digits.
func shortDigest(d string) string {
	if len(d) > 19 {
		return d[:19]
	}
	return d
}

// imageName is an image's names, or "<none>" for one known by digest only.
func imageName(im model.Image) string {
	if len(im.Names) == 0 {
		return "<none>"
	}
	return strings.Join(im.Names, ",")
}
