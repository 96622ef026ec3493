package printers

import (
	"fmt"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"
)

// Age formats a duration as kubectl's AGE column does (apimachinery's
// duration.HumanDuration): two or three significant figures, "45s", "2m30s" (minutes
// and seconds under ten minutes), "45m", "3h20m" (hours and minutes under eight
// hours), "20h", "5d4h" (days and hours under eight days), "45d", "2y30d" (years and
// days under eight years), "9y". Up to a second in the future (clock skew) is "0s";
// further is "<invalid>".
func Age(d time.Duration) string {
	if seconds := int(d.Seconds()); seconds < -1 {
		return "<invalid>"
	} else if seconds < 0 {
		return "0s"
	} else if seconds < 2*60 {
		return fmt.Sprintf("%ds", seconds)
	}
	minutes := int(d / time.Minute)
	if minutes < 10 {
		if s := int(d/time.Second) % 60; s != 0 {
			return fmt.Sprintf("%dm%ds", minutes, s)
		}
		return fmt.Sprintf("%dm", minutes)
	} else if minutes < 3*60 {
		return fmt.Sprintf("%dm", minutes)
	}
	hours := int(d / time.Hour)
	switch {
	case hours < 8:
		if m := minutes % 60; m != 0 {
			return fmt.Sprintf("%dh%dm", hours, m)
		}
		return fmt.Sprintf("%dh", hours)
	case hours < 48:
		return fmt.Sprintf("%dh", hours)
	case hours < 8*24:
		if h := hours % 24; h != 0 {
			return fmt.Sprintf("%dd%dh", hours/24, h)
		}
		return fmt.Sprintf("%dd", hours/24)
	case hours < 2*365*24:
		return fmt.Sprintf("%dd", hours/24)
	case hours < 8*365*24:
		if days := hours / 24 % 365; days != 0 {
			return fmt.Sprintf("%dy%dd", hours/24/365, days)
		}
		return fmt.Sprintf("%dy", hours/24/365)
	}
	return fmt.Sprintf("%dy", hours/24/365)
}

// since is the Age of ts at c.now, or "<unknown>" for no time, as kubectl prints it.
func (c rowContext) since(ts *timestamppb.Timestamp) string {
	if ts == nil {
		return "<unknown>"
	}
	return Age(c.now.Sub(ts.AsTime()))
}
