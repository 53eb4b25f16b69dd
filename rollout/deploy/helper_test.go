package deploy

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"strconv"
	"syscall"
	"testing"
	"time"
)

// The test binary doubles as the service that process targets start: with DEPLOY_TEST_HELPER set
// it runs helperMain instead of the tests.
func TestMain(m *testing.M) {
	if mode := os.Getenv("DEPLOY_TEST_HELPER"); mode != "" {
		os.Exit(helperMain(mode))
	}
	os.Exit(m.Run())
}

// helperMain modes:
//
//	serve        answer 200 "COHORT PORT" on $PORT; exit 0 on SIGTERM
//	ignore-term  like serve, but ignore SIGTERM
//	exit         print "boom" and exit 3 at once
//	never-ready  answer 503
//	sickens      like serve, but answer 503 once $SICK_FILE exists
//	child        like serve, and start a grandchild (mode sleep) whose pid goes to $CHILD_PID_FILE
//	sleep        sleep for a minute
func helperMain(mode string) int {
	switch mode {
	case "exit":
		fmt.Println("boom")
		return 3
	case "sleep":
		time.Sleep(time.Minute)
		return 0
	}
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGTERM)
	if mode == "child" {
		c := exec.Command(os.Args[0])
		c.Env = append(os.Environ(), "DEPLOY_TEST_HELPER=sleep")
		if err := c.Start(); err != nil {
			fmt.Println(err)
			return 1
		}
		if err := os.WriteFile(os.Getenv("CHILD_PID_FILE"), []byte(strconv.Itoa(c.Process.Pid)), 0o644); err != nil {
			fmt.Println(err)
			return 1
		}
	}
	var l net.Listener
	var err error
	pidOK := ""
	if os.Getenv("CANARYCTL_LISTEN_FD") == "3" {
		// socket activation: the listener is fd 3, LISTEN_PID names this process
		l, err = net.FileListener(os.NewFile(3, "listener"))
		if os.Getenv("LISTEN_PID") == strconv.Itoa(os.Getpid()) && os.Getenv("LISTEN_FDS") == "1" {
			pidOK = " fd3"
		}
	} else {
		l, err = net.Listen("tcp", "127.0.0.1:"+os.Getenv("PORT"))
	}
	if err != nil {
		fmt.Println(err)
		return 1
	}
	fmt.Println("listening on", l.Addr(), "args", os.Args[1:])
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		if _, err := os.Stat(os.Getenv("SICK_FILE")); mode == "never-ready" || mode == "sickens" && err == nil {
			w.WriteHeader(http.StatusServiceUnavailable)
			return
		}
		fmt.Fprintf(w, "%s %s%s", os.Getenv("CANARYCTL_COHORT"), os.Getenv("PORT"), pidOK)
	})}
	go func() { _ = srv.Serve(l) }()
	for range sigs {
		if mode == "ignore-term" {
			fmt.Println("ignoring SIGTERM")
			continue
		}
		fmt.Println("SIGTERM: shutting down")
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		_ = srv.Shutdown(ctx)
		return 0
	}
	return 0
}
