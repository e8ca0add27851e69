// The Go clientv3 peer of ClientBench: the client that etcd's own tutorial teaches
// (go.etcd.io/etcd/clientv3, etcd 3.4 from Debian's golang-etcd-server-dev), making the same
// measurements as EtcdClient on the same etcd and printing them as one JSON object.
//
//	clientbench-go ENDPOINT PREFIX DATA_PREFIX PUTS READS WATCHES ETCD_PID
//
// Puts go to PREFIX/put/N, put -> watch samples to PREFIX/watch/N; the Range reads
// DATA_PREFIX (already loaded by ClientBench). CPU figures are utime+stime from
// /proc/self/stat (this process, all threads) and /proc/ETCD_PID/stat, before and after each
// phase. `clientbench-go puts ENDPOINT PREFIX PUTS` makes only puts (200 warm-up, then PUTS),
// for Benchmarks/wire_capture.py. Built by scripts/bench in GOPATH mode from Debian's packages only (no module proxy).
package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"sort"
	"strconv"
	"strings"
	"time"

	"go.etcd.io/etcd/clientv3"
)

func pct(v []float64, p float64) float64 {
	s := append([]float64(nil), v...)
	sort.Float64s(s)
	i := int(p/100*float64(len(s)-1) + 0.5)
	return s[i]
}

// cpuSeconds reads utime+stime of a process from /proc/PID/stat (clock ticks of 1/100 s).
func cpuSeconds(pid string) float64 {
	b, err := os.ReadFile("/proc/" + pid + "/stat")
	if err != nil {
		panic(err)
	}
	s := string(b)
	f := strings.Fields(s[strings.LastIndex(s, ")")+2:])
	u, _ := strconv.ParseFloat(f[11], 64)
	t, _ := strconv.ParseFloat(f[12], 64)
	return (u + t) / 100
}

func main() {
	if len(os.Args) == 5 && os.Args[1] == "puts" {
		putsOnly(strings.TrimPrefix(os.Args[2], "http://"), os.Args[3], os.Args[4])
		return
	}
	if len(os.Args) != 8 {
		fmt.Fprintln(os.Stderr, "usage: clientbench-go ENDPOINT PREFIX DATA_PREFIX PUTS READS WATCHES ETCD_PID")
		os.Exit(2)
	}
	ep := strings.TrimPrefix(os.Args[1], "http://")
	prefix, dataPrefix := os.Args[2], os.Args[3]
	puts, _ := strconv.Atoi(os.Args[4])
	reads, _ := strconv.Atoi(os.Args[5])
	watches, _ := strconv.Atoi(os.Args[6])
	etcdPid := os.Args[7]
	cli, err := clientv3.New(clientv3.Config{Endpoints: []string{ep}, DialTimeout: 5 * time.Second, MaxCallRecvMsgSize: 1 << 30})
	if err != nil {
		panic(err)
	}
	defer cli.Close()
	ctx := context.Background()
	value := strings.Repeat("x", 100)
	out := map[string]float64{}

	for i := 0; i < 200; i++ {
		if _, err := cli.Put(ctx, prefix+"warm/"+strconv.Itoa(i), value); err != nil {
			panic(err)
		}
	}
	lat := make([]float64, 0, puts)
	c0, e0 := cpuSeconds("self"), cpuSeconds(etcdPid)
	t0 := time.Now()
	for i := 0; i < puts; i++ {
		s := time.Now()
		if _, err := cli.Put(ctx, prefix+"put/"+strconv.Itoa(i%1000), value); err != nil {
			panic(err)
		}
		lat = append(lat, time.Since(s).Seconds())
	}
	el := time.Since(t0).Seconds()
	c1, e1 := cpuSeconds("self"), cpuSeconds(etcdPid)
	out["put_p50_ms"], out["put_p99_ms"], out["put_per_s"] = pct(lat, 50)*1e3, pct(lat, 99)*1e3, float64(puts)/el
	out["put_client_cpu_ms"], out["put_etcd_cpu_ms"] = (c1-c0)*1e3/float64(puts), (e1-e0)*1e3/float64(puts)

	var rt []float64
	for r := 0; r < reads; r++ {
		s := time.Now()
		resp, err := cli.Get(ctx, dataPrefix, clientv3.WithPrefix())
		if err != nil {
			panic(err)
		}
		n := 0 // touch every key and value, as the other peers do
		for _, kv := range resp.Kvs {
			n += len(kv.Key) + len(kv.Value)
		}
		rt = append(rt, time.Since(s).Seconds())
		out["read_keys"] = float64(len(resp.Kvs))
	}
	out["read_s"] = pct(rt, 50)

	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	wch := cli.Watch(wctx, prefix+"watch/", clientv3.WithPrefix(), clientv3.WithCreatedNotify())
	<-wch // created
	var wl []float64
	c0, e0 = cpuSeconds("self"), cpuSeconds(etcdPid)
	for i := 0; i < watches; i++ {
		key := prefix + "watch/" + strconv.Itoa(i)
		s := time.Now()
		if _, err := cli.Put(ctx, key, value); err != nil {
			panic(err)
		}
		r := <-wch
		if len(r.Events) != 1 || string(r.Events[0].Kv.Key) != key {
			panic("unexpected watch response")
		}
		wl = append(wl, time.Since(s).Seconds())
	}
	c1, e1 = cpuSeconds("self"), cpuSeconds(etcdPid)
	out["watch_p50_ms"], out["watch_p99_ms"] = pct(wl, 50)*1e3, pct(wl, 99)*1e3
	out["watch_client_cpu_ms"], out["watch_etcd_cpu_ms"] = (c1-c0)*1e3/float64(watches), (e1-e0)*1e3/float64(watches)
	b, _ := json.Marshal(out)
	fmt.Println(string(b))
}

// putsOnly makes 200 puts to PREFIX/warm/N, then PUTS to PREFIX/put/(N % 1000): the puts of a
// wire capture.
func putsOnly(ep, prefix, count string) {
	n, err := strconv.Atoi(count)
	if err != nil {
		panic(err)
	}
	cli, err := clientv3.New(clientv3.Config{Endpoints: []string{ep}, DialTimeout: 5 * time.Second})
	if err != nil {
		panic(err)
	}
	defer cli.Close()
	value := strings.Repeat("x", 100)
	for i := 0; i < 200+n; i++ {
		key := prefix + "warm/" + strconv.Itoa(i)
		if i >= 200 {
			key = prefix + "put/" + strconv.Itoa((i-200)%1000)
		}
		if _, err := cli.Put(context.Background(), key, value); err != nil {
			panic(err)
		}
	}
}
