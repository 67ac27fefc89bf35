// random-data SIZE SEED writes SIZE bytes of Go's math/rand (v1) stream for SEED to stdout,
// exactly as ipfs/go-test's cli/random-data v0.3 does: the input of kubo's 100 MiB vectors.
package main

import (
	"bufio"
	"io"
	"math/rand"
	"os"
	"strconv"
)

func main() {
	size, err := strconv.ParseInt(os.Args[1], 10, 64)
	if err != nil {
		panic(err)
	}
	seed, err := strconv.ParseInt(os.Args[2], 10, 64)
	if err != nil {
		panic(err)
	}
	w := bufio.NewWriterSize(os.Stdout, 1<<20)
	if _, err := io.CopyN(w, rand.New(rand.NewSource(seed)), size); err != nil {
		panic(err)
	}
	if err := w.Flush(); err != nil {
		panic(err)
	}
}
