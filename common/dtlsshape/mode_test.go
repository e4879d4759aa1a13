package dtlsshape

import "testing"

func TestParseMode(t *testing.T) {
	for _, tc := range []struct {
		in      string
		want    Mode
		wantErr bool
	}{
		{"", Mimic, false},
		{"mimic", Mimic, false},
		{" Mimic ", Mimic, false},
		{"randomize", Randomize, false},
		{"randomizemimic", RandomizeMimic, false},
		{"RANDOMIZEMIMIC", RandomizeMimic, false},
		{"disable", Disable, false},
		{"random", 0, true},
		{"mimic,randomize", 0, true},
		{"off", 0, true},
	} {
		got, err := ParseMode(tc.in)
		if (err != nil) != tc.wantErr {
			t.Errorf("ParseMode(%q) error = %v, want error %v", tc.in, err, tc.wantErr)
			continue
		}
		if err == nil && got != tc.want {
			t.Errorf("ParseMode(%q) = %v, want %v", tc.in, got, tc.want)
		}
		if err == nil {
			if back, err := ParseMode(got.String()); err != nil || back != got {
				t.Errorf("ParseMode(%v.String()) = %v, %v", got, back, err)
			}
		}
	}
}
