# CPU time of one small websocket-sized send on loopback TCP (the receiver's TCP processing runs in
# the sender's softirq context and is counted), and of a bare syscall for comparison.
import socket, resource, os
N=2000; R=20
srv=socket.socket(); srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR,1); srv.bind(('127.0.0.1',0)); srv.listen(4096)
port=srv.getsockname()[1]; cl=[]; sv=[]
for i in range(N):
    c=socket.create_connection(('127.0.0.1',port)); s,_=srv.accept()
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY,1); sv.append(s); cl.append(c)
msg=b'\x81\x60'+b'a'*96
def cpu(): r=resource.getrusage(resource.RUSAGE_SELF); return r.ru_utime+r.ru_stime
t=cpu()
for _ in range(R):
    for s in sv: s.send(msg)
send=cpu()-t
t=cpu()
for _ in range(R):
    for s in sv: os.getppid()
bare=cpu()-t
print(f"send {send/N/R*1e6:.2f} us per message; a bare syscall through the same Python loop {bare/N/R*1e6:.2f} us")
