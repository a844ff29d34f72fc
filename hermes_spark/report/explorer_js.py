# ruff: noqa: E501
"""The explorer page's inline script (plain JavaScript, no library): paging, search by
code prefix or term, drill from a level-1 card to its children (``parts/`` on demand)."""

EXPLORER_JS = r"""
(function(){
const D=JSON.parse(document.getElementById('cards-data').textContent);
const parts={};
let page=0, shown=D.top;
function esc(s){return String(s==null?'':s).replace(/[&<>"]/g,c=>({'&':'&amp;','<':'&lt;','>':'&gt;','"':'&quot;'}[c]));}
function fmt(x){return x==null?'':(+x).toPrecision(3);}
function card(c){
  const ex=(c.nearest||[]).map(e=>'<div class="ex">near: '+esc(e.snippet)+'</div>').join('')+
    (c.random||[]).map(e=>'<div class="ex">random: '+esc(e.snippet)+'</div>').join('');
  const mix=(c.mix||[]).map(m=>esc(m.column)+'='+esc(m.value)+' ('+m.docs+')').join(', ');
  return '<div class="card" data-code="'+esc(c.code)+'" data-level="'+c.level+'">'+
    '<h3>L'+c.level+' '+esc(c.code)+' · '+c.docs+' docs · '+c.tokens+' tokens · share '+fmt(c.share_tokens)+
    ' · quality p50 '+fmt(c.quality_p50)+'</h3><div class="terms">'+esc((c.top_terms||[]).join(', '))+
    '</div>'+(mix?'<div class="ex">mix: '+mix+'</div>':'')+ex+'<div class="kids"></div></div>';
}
function children(code, done){
  const c1=code.split('.')[0];
  if(D.children[c1]){done(D.children[c1]);return;}
  if(parts[c1]){done(parts[c1]);return;}
  const s=document.createElement('script'); s.src='parts/'+c1+'.js';
  window.hermesPart=function(k,v){parts[k]=v;};
  s.onload=function(){done(parts[c1]||[]);}; document.head.appendChild(s);
}
function draw(){
  const list=document.getElementById('list');
  const slice=shown.slice(page*D.page_size,(page+1)*D.page_size);
  list.innerHTML=slice.map(card).join('');
  document.getElementById('count').textContent=shown.length+' cards, page '+(page+1)+' of '+Math.max(1,Math.ceil(shown.length/D.page_size));
}
function search(){
  const q=document.getElementById('q').value.trim().toLowerCase(); page=0;
  if(!q){shown=D.top;draw();return;}
  if(/^[0-9.]+$/.test(q)){
    const p=q.replace(/\.+$/,''), c1=p.split('.')[0];
    const hits=D.top.filter(c=>c.code===c1);
    if(q.indexOf('.')<0){shown=hits;draw();return;}
    children(c1,function(kids){shown=hits.concat(kids.filter(c=>c.code===p||c.code.startsWith(p+'.')));draw();});
    return;
  }
  const pool=D.top.concat(...Object.values(D.children),...Object.values(parts));
  shown=pool.filter(c=>(c.top_terms||[]).some(t=>t.indexOf(q)>=0));
  draw();
}
document.getElementById('q').addEventListener('input',search);
document.getElementById('prev').addEventListener('click',()=>{if(page>0){page--;draw();}});
document.getElementById('next').addEventListener('click',()=>{if((page+1)*D.page_size<shown.length){page++;draw();}});
document.getElementById('list').addEventListener('click',function(ev){
  const el=ev.target.closest('.card'); if(!el||el.dataset.level!=='1')return;
  const box=el.querySelector('.kids');
  if(box.innerHTML){box.innerHTML='';return;}
  children(el.dataset.code,function(kids){box.innerHTML=kids.filter(c=>c.level===2).map(card).join('')||'<i>no children carded</i>';});
});
draw();
})();
"""
