import sys
prev=None; out=[]
for l in open(sys.argv[1]):
    t,b=l.split(); t=float(t); b=int(b)
    if prev: out.append(f"{(b-prev[1])/(t-prev[0])/1e6:.0f}")
    prev=(t,b)
print(" ".join(out))
