# prints the N frames above a leaf matching LEAF, counted
/cpu-clock/ { if (keep) c[stack]++; n=0; keep=0; stack=""; next }
/^[ \t]*$/ { next }
{ n++; s=$2; for (i=3;i<NF;i++) s=s" "$i; sub(/\+0x[0-9a-f]+.*/,"",s);
  if (n==1) keep = (s ~ LEAF); else if (keep && n<=DEPTH) stack = stack " | " s }
END { if (keep) c[stack]++; for (k in c) print c[k], k }
